"""`make gpu_check`: measure (measure.py, probe.py), judge (judge.py, judge_memory.py), print and
write gpu_check.md (report.py); see __init__.py. Without a CUDA GPU: one line, exit 2."""

import json
import sys
import time
from datetime import datetime, timezone

import torch

from utils import checks, devices
from utils.drivers.gpu_check import judge, judge_memory, measure, report


def no_gpu():
    """The one line said where torch sees no CUDA GPU."""
    return (f"gpu_check: error: no CUDA GPU: torch {torch.__version__} (CUDA {torch.version.cuda or 'none'}) "
            "sees none; this check needs one")


def gpu_key(device):
    """The GPU table's key for this device (what make plan's GPU= takes), or None."""
    gpu = devices.by_name(device)
    return gpu.key if gpu else None


def judge_all(probe, rows, ran):
    """The six checks of what was measured."""
    plan = (ran["plan"].status, ran["plan"].output) if "plan" in ran else (None, "")
    parallel = {name: (ran[name].status, ran[name].output) for name, *_ in measure.PARALLEL if name in ran}
    return [
        judge.precision(probe),
        judge.smoke(rows, probe["capability"]),
        judge.timing(rows),
        judge_memory.graph_memory(rows),
        judge.parallel(parallel, probe["gpus"]),
        judge_memory.plan(rows, gpu_key(probe["device"]), probe["device"], *plan),
    ]


def notes(backup, seconds):
    shape = " ".join(f"{name}={value}" for name, value in measure.SHAPE.items())
    said = [f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {seconds / 60:.1f} minutes; every run at {shape} "
            "(fixed: the bars are set for it), its rows in [results.csv](results.csv)"]
    return said + ([f"the earlier results.csv was moved to {backup.name}"] if backup else [])


def main():
    # torch.cuda.is_available asks the driver for a device count: no CUDA context is made here
    if not torch.cuda.is_available():
        print(no_gpu(), file=sys.stderr)
        return checks.EXIT_BAD_INPUT
    started = time.monotonic()
    try:
        probe = measure.probe()
        folder = measure.output_dir(probe["device"])
        backup = measure.prepare(folder)
    except measure.ProbeFailed as err:
        print(f"gpu_check: FAIL: {err}", file=sys.stderr)
        return 1
    except checks.BadInput as err:  # a results.csv there that is not the suite's
        print(f"gpu_check: error: {err}", file=sys.stderr)
        return checks.EXIT_BAD_INPUT
    if backup:
        print(f"gpu_check: the earlier {folder / 'results.csv'} was moved to {backup.name}")
    (folder / "probe.json").write_text(json.dumps(probe, indent=1) + "\n")
    ran = measure.measure(folder, probe["gpus"], gpu_key(probe["device"]))
    try:
        rows = measure.rows(folder)
    except checks.BadInput as err:  # the runs left a results.csv that does not read
        print(f"gpu_check: FAIL: {err}", file=sys.stderr)
        return 1
    found = judge_all(probe, rows, ran)
    print()
    for check in found:
        print(report.text(check) + "\n")
    seconds = time.monotonic() - started
    (folder / "gpu_check.md").write_text(report.markdown(probe, found, ran, notes(backup, seconds)))
    print(report.overall(found))
    print(f"gpu_check: {seconds:.0f} s; wrote {folder}/gpu_check.md, results.csv, probe.json and a log per command")
    return 1 if any(check.verdict == judge.FAIL for check in found) else 0


if __name__ == "__main__":
    sys.exit(main())
