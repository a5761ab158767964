"""`make gpu_check`: measure (measure.py, probe.py), judge (judge.py, judge_memory.py), print and
write gpu_check.md (report.py), through command.py's flow; see __init__.py. Without a CUDA GPU:
one line, exit 2."""

import sys

from utils.drivers.gpu_check import judge, judge_memory, measure
from utils.drivers.gpu_check.command import Command, gpu_key, main, planned


def judge_all(probe, rows, ran):
    """The six checks of what was measured."""
    parallel = {name: (ran[name].status, ran[name].output) for name, *_ in measure.PARALLEL if name in ran}
    return [
        judge.precision(probe),
        judge.smoke(rows, probe["capability"]),
        judge.timing(rows),
        judge_memory.graph_memory(rows),
        judge.parallel(parallel, probe["gpus"]),
        judge_memory.plan(rows, gpu_key(probe["device"]), probe["device"], *planned(ran)),
    ]


GPU_CHECK = Command("gpu_check", "", measure.SHAPE,
                    lambda folder, probe: measure.measure(folder, probe["gpus"], gpu_key(probe["device"])), judge_all)


if __name__ == "__main__":
    sys.exit(main(GPU_CHECK))
