"""Run under torchrun (2 ranks, gloo): the suite's FSDP2 step on the tiny preset, and write rank 0's
collectives of its second step (name, bytes, in order) as JSON to the path given."""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parents[1])]
from helpers import plan_cfg  # noqa: E402

from utils.measure.train import build_run  # noqa: E402
from utils.plan.machine import Recording  # noqa: E402
from utils.plan.timing import OpRecorder  # noqa: E402
from utils.registry import load_setup  # noqa: E402
from utils.techniques.parallel import World  # noqa: E402


def main(out):
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    run = build_run(plan_cfg(World("fsdp", rank, rank, 2)), load_setup("baseline"))
    micro = [(torch.zeros(4, 128, dtype=torch.long),) * 2]  # token 0, as the planner's step
    run.step(run, micro)
    recorder = OpRecorder()
    with Recording(recorder):
        run.step(run, micro)
    if rank == 0:
        Path(out).write_text(json.dumps([(op.name, op.bytes) for op in recorder.ops if op.kind == "collective"]))
    del run
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
