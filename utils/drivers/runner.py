"""The one way a driver runs a technique: its script in a fresh process (so one failure or
out-of-memory cannot poison the next run), settings passed in the environment, and what the
run reported read back from its summary file (status, one-line summary, run id).

Under torchrun each rank leaves its own summary (SUMMARY_FILE.<rank>); the run's outcome
then names the rank that failed first (a rank that left none was killed).
"""

import json
import os
import resource
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from utils import registry, settings
from utils.units import GIB

FAILED = ("error", "oom")


@dataclass(frozen=True)
class Outcome:
    status: str  # ok, skipped, oom, error, or timeout (the runner stopped it)
    line: str  # the run's one-line summary, or why there is none
    run_id: str = None  # of the rows it appended, if any
    output: str = ""  # stdout + stderr, when captured


def memory_cap(gib):
    """preexec_fn for a child process: limit its data segment (every heap and anonymous
    mapping) to `gib` GiB, so torch's allocator fails as a GPU's would."""
    limit = int(gib * GIB)
    return lambda: resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def torchrun(nproc, port=None):
    """The launcher prefix for `nproc` processes on this machine (torchrun --standalone, or
    a c10d rendezvous on localhost:PORT)."""
    rendezvous = ["--standalone"] if port is None else ["--rdzv-backend=c10d", f"--rdzv-endpoint=localhost:{port}"]
    return [sys.executable, "-m", "torch.distributed.run", *rendezvous, f"--nproc_per_node={nproc}"]


def command(name, launcher=None):
    """The command line that runs technique or combination `name` (canonical) once: its script,
    or, for a combination (no script), utils.measure.train by name; under `launcher` if given."""
    target = ["-m", "utils.measure.train", name] if "+" in name else [str(registry.script(name))]
    return [*(launcher or [sys.executable]), *target]


def run(name, overrides=None, capture=False, timeout=None, memory_gib=None, launcher=None, ranks=1, threads=None):
    """Run scripts/<name>.py, or combination `name` by name (under `launcher` with `ranks`
    processes, if given) with the settings `overrides` ({NAME: value}) over this environment's
    (and OMP_NUM_THREADS=`threads` if given); return its Outcome."""
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "summary.json"
        env = {**os.environ, **settings.environ({**(overrides or {}), "SUMMARY_FILE": summary}),
               **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
        try:
            proc = subprocess.run(command(name, launcher), env=env, capture_output=capture, text=True, timeout=timeout,
                                  preexec_fn=memory_cap(memory_gib) if memory_gib else None)
        except subprocess.TimeoutExpired:
            return Outcome("timeout", f"{name}: stopped after {timeout:g} s")
        output = (proc.stdout or "") + (proc.stderr or "")
        if launcher:
            return ranks_outcome(summary, ranks, proc.returncode, output)
        if summary.exists():
            reported = json.loads(summary.read_text())
            if proc.returncode == 0 or reported["status"] in FAILED:
                return Outcome(reported["status"], reported["line"], reported["run_id"], output)
        return Outcome("error", f"{name}: error: exited with status {proc.returncode}", output=output)


def ranks_outcome(summary, nproc, returncode, output):
    """The run's Outcome from its ranks' summaries (SUMMARY_FILE.<rank>)."""
    ranks = {}
    for rank in range(nproc):
        path = Path(f"{summary}.{rank}")
        ranks[rank] = json.loads(path.read_text()) if path.exists() else None
    failed = [s["line"] for s in ranks.values() if s and s["status"] not in ("ok", "skipped")]
    silent = [rank for rank, s in ranks.items() if s is None]
    interrupted = [line for line in failed if "interrupted" in line]
    causes = [line for line in failed if "interrupted" not in line]
    if causes or silent:
        # a rank that vanished comes first: the others' collective errors follow from it
        why = [f"rank {rank} stopped without a summary (killed?)" for rank in silent]
        why += [("then " if silent else "") + line for line in causes]
        stopped = f"; {len(interrupted)} other rank(s) stopped by torchrun" if interrupted else ""
        return Outcome("error", "; ".join(why) + stopped + "; nothing was written", output=output)
    if returncode != 0:
        return Outcome("error", f"torchrun exited with status {returncode}", output=output)
    return Outcome(ranks[0]["status"], ranks[0]["line"], ranks[0].get("run_id"), output)
