"""A check command's one flow, for gpu_check and finetune_check: probe the GPU in a process of
its own, prepare docs/results/<device>/[subfolder] (an earlier results.csv moved aside), run the
command's measurements, judge what they wrote, print and write <name>.md (report.py). Without a
CUDA GPU: one line, exit 2."""

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import torch

from utils import checks, devices
from utils.drivers.gpu_check import judge, measure, report


@dataclass(frozen=True)
class Command:
    """A check command: the make target it is, where its figures go, the settings every run takes,
    what it runs and how it judges what ran."""

    name: str  # the make target, the .md it writes
    subfolder: str  # under docs/results/<device>/ ('': that folder itself)
    settings: dict  # make variable -> value every run takes, fixed: the bars are set for them
    measure: Callable  # (folder, probe readings) -> {stage: Ran}
    judge: Callable  # (probe readings, results.csv rows, {stage: Ran}) -> [Check]


def no_gpu(name):
    """The one line said where torch sees no CUDA GPU."""
    return (f"{name}: error: no CUDA GPU: torch {torch.__version__} (CUDA {torch.version.cuda or 'none'}) "
            "sees none; this check needs one")


def gpu_key(device):
    """The GPU table's key for this device (what make plan's GPU= takes), or None."""
    gpu = devices.by_name(device)
    return gpu.key if gpu else None


def planned(ran):
    """make plan's (exit status, output), or (None, '') where it did not run."""
    return (ran["plan"].status, ran["plan"].output) if "plan" in ran else (None, "")


def notes(command, backup, seconds):
    shape = " ".join(f"{name}={value}" for name, value in command.settings.items())
    said = [f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {seconds / 60:.1f} minutes; every run at {shape} "
            "(fixed: the bars are set for it), its rows in [results.csv](results.csv)"]
    return said + ([f"the earlier results.csv was moved to {backup.name}"] if backup else [])


def main(command):
    # torch.cuda.is_available asks the driver for a device count: no CUDA context is made here
    if not torch.cuda.is_available():
        print(no_gpu(command.name), file=sys.stderr)
        return checks.EXIT_BAD_INPUT
    started = time.monotonic()
    try:
        probe = measure.probe()
        folder = measure.output_dir(probe["device"]) / command.subfolder
        backup = measure.prepare(folder)
    except measure.ProbeFailed as err:
        print(f"{command.name}: FAIL: {err}", file=sys.stderr)
        return 1
    except checks.BadInput as err:  # a results.csv there that is not the suite's
        print(f"{command.name}: error: {err}", file=sys.stderr)
        return checks.EXIT_BAD_INPUT
    if backup:
        print(f"{command.name}: the earlier {folder / 'results.csv'} was moved to {backup.name}")
    (folder / "probe.json").write_text(json.dumps(probe, indent=1) + "\n")
    ran = command.measure(folder, probe)
    try:
        rows = measure.rows(folder)
    except checks.BadInput as err:  # the runs left a results.csv that does not read
        print(f"{command.name}: FAIL: {err}", file=sys.stderr)
        return 1
    found = command.judge(probe, rows, ran)
    print()
    for check in found:
        print(report.text(check) + "\n")
    seconds = time.monotonic() - started
    (folder / f"{command.name}.md").write_text(
        report.markdown(command.name, probe, found, ran, notes(command, backup, seconds)))
    print(report.overall(command.name, found))
    print(f"{command.name}: {seconds:.0f} s; wrote {folder}/{command.name}.md, results.csv, probe.json and a log per "
          "command")
    return 1 if any(check.verdict == judge.FAIL for check in found) else 0
