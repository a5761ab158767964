"""The measuring half of gpu_check: the suite's own commands as a user types them (make
subprocesses) at one fixed shape, each one's output printed and logged beside the results, and
the CUDA probe (probe.py); everything lands in one folder, docs/results/<device slug>/."""

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from utils import results, settings
from utils.drivers.gpu_check.judge import SMOKE

ROOT = Path(__file__).resolve().parents[3]
# small, so that ten techniques, two more compiles and a plan take minutes on one GPU (and fit any
# GPU of 8 GiB), yet large enough that activations and temporaries are half of the baseline's
# peak (the planner's breakdown: 1.5 of 3.0 GiB), so that a graph pool left uncounted shows in (d)
SHAPE = {"MODEL": "gpt2", "BATCH": "4", "SEQ": "256", "STEPS": "20", "WARMUP": "5"}
COMPILE_MODES = ("default", "reduce-overhead")  # (d): the graphed mode and its reference without graphs
# (e), with 2+ GPUs: (name, make target, technique); FSDP2 again under bf16, whose blocks gather bf16 weights
PARALLEL = (("ddp", "ddp", "baseline"), ("fsdp", "fsdp", "baseline"), ("fsdp bf16", "fsdp", "flash"))
# no one command may take longer than the whole check should
COMMAND_TIMEOUT_S = 600
TIMED_OUT = 124  # the exit status timeout(1) gives
# the caller's settings (SUITE_*) and make's own variables stay behind: the check runs its own fixed shape
NOT_PASSED = {"MAKEFLAGS", "MAKELEVEL", "MFLAGS"}


class ProbeFailed(RuntimeError):
    """The CUDA probe did not answer: CUDA itself is broken here; str(self) says how."""


@dataclass(frozen=True)
class Ran:
    """A command gpu_check ran: as typed, its exit status, its output and where that is logged."""

    command: str
    status: int
    output: str
    log: str  # file name in the output folder
    seconds: float


def slug(device):
    """The device's folder name, as make session makes it: NVIDIA H100 80GB HBM3 -> nvidia_h100_80gb_hbm3."""
    return re.sub(r"[^a-z0-9]+", "_", device.lower()).strip("_")


def output_dir(device):
    return ROOT / "docs" / "results" / slug(device)


def prepare(folder):
    """Create `folder`; move an earlier results.csv there to results.csv.<utc time>.bak (as make
    session does: earlier figures are never overwritten). Returns the backup's path, or None."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return results.reset(folder / "results.csv")


def rows(folder):
    """What the runs wrote to the folder's results.csv (no rows if none wrote any)."""
    path = Path(folder) / "results.csv"
    return results.read(path) if path.exists() and path.stat().st_size else pd.DataFrame(columns=list(results.COLUMNS))


def child_env():
    return {name: value for name, value in os.environ.items()
            if name not in NOT_PASSED and not name.startswith(settings.PREFIX)}


def _stop(proc):
    """End the command's whole process group (make, the drivers, the scripts, torchrun's ranks)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def stream(command, folder, log, timeout=COMMAND_TIMEOUT_S):
    """Run `command` at the suite's root, its output printed as it comes and written to
    folder/log; stopped after `timeout` seconds (exit status TIMED_OUT); return its Ran."""
    shown = shlex.join(command)
    print(f"\n=== gpu_check: {shown}  (log: {log})", flush=True)
    started, lines = time.monotonic(), []
    # a session of its own: a hung command (a collective waiting forever) is stopped with all it started
    with open(Path(folder) / log, "w") as file, subprocess.Popen(
            command, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True) as proc:
        watchdog = threading.Timer(timeout, _stop, (proc,))
        watchdog.start()
        try:
            for line in proc.stdout:
                print(line, end="", flush=True)
                file.write(line)
                lines.append(line)
            proc.wait()
        except BaseException:
            _stop(proc)  # interrupted (Ctrl-C): nothing of it goes on holding the GPU
            raise
        finally:
            watchdog.cancel()
    seconds = time.monotonic() - started
    status = TIMED_OUT if proc.returncode < 0 and seconds >= timeout else proc.returncode
    said = f"stopped after {timeout} s" if status == TIMED_OUT else f"exit {status} after {seconds:.0f} s"
    print(f"=== gpu_check: {said}", flush=True)
    return Ran(shown, status, "".join(lines) + (f"gpu_check: {said}\n" if status == TIMED_OUT else ""), log, seconds)


def make(target, folder, log, **variables):
    """`make target` at the check's shape, its rows into the folder's results.csv."""
    given = {**SHAPE, **variables, "RESULTS_FILE": str(Path(folder) / "results.csv")}
    command = ["make", "--no-print-directory", target, f"PYTHON={sys.executable}"]
    return stream(command + [f"{name}={value}" for name, value in given.items()], folder, log)


def probe():
    """The probe's readings (probe.py), from a process that has ended (its CUDA context with it)."""
    command = [sys.executable, "-m", "utils.drivers.gpu_check.probe"]
    proc = subprocess.run(command, cwd=ROOT, env=child_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ProbeFailed(f"the CUDA probe ({shlex.join(command)}) exited {proc.returncode}: {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(folder, gpus, gpu_key):
    """Every command the checks judge, in order: {stage: Ran}. make plan only where the device
    has an entry in the GPU table (`gpu_key`), ddp and fsdp only with 2+ `gpus`."""
    ran = {"all": make("all", folder, "all.log", TECHNIQUES=" ".join(SMOKE))}
    for mode in COMPILE_MODES:
        ran[f"compile {mode}"] = make("run", folder, f"compile_{mode}.log", T="compile", COMPILE_MODE=mode)
    if gpus >= 2:
        for name, kind, technique in PARALLEL:
            ran[name] = make(kind, folder, f"{name.replace(' ', '_')}.log", TECHNIQUE=technique, NPROC="2",
                             LOSS_CHECK="1")
    if gpu_key is not None:
        ran["plan"] = make("plan", folder, "plan.log", GPU=gpu_key, TECHNIQUES=" ".join(SMOKE))
    return ran
