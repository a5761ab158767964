"""The CUDA side of gpu_check's precision check, and the device's facts, in a process of its own:
the suite's strict_fp32 then its tf32 applied to a run, the flags each leaves read back, an
fp32 matmul's error against fp64 under each; printed as one JSON object.

A process of its own because a CUDA context holds device memory: held by gpu_check itself
while the runs measure, it would count in their device totals (mem_get_info's used memory).

usage: python -m utils.drivers.gpu_check.probe
"""

import json
import os
from types import SimpleNamespace

import torch

from utils import checks
from utils import techniques as t
from utils.drivers.gpu_check.judge import OVERRIDES
from utils.measure import env
from utils.techniques import stages
from utils.techniques.parallel import World
from utils.units import MIB

MATMUL_SIZE = 2048


def matmul_error(device, size=MATMUL_SIZE, seed=0):
    """max |fp32 product - fp64 product| / RMS of the fp64 product, for two randn matrices: the
    RMS, not each entry, so that entries near zero do not blow the figure up."""
    generator = torch.Generator(device=device).manual_seed(seed)
    a, b = (torch.randn(size, size, device=device, generator=generator) for _ in range(2))
    exact = a.double() @ b.double()
    return ((a @ b).double() - exact).abs().max().item() / exact.pow(2).mean().sqrt().item()


def reading(run, technique):
    """Apply `technique` to `run`; the flags it leaves and the matmul error, or why it skipped."""
    try:
        technique(run)
    except t.Skip as why:
        return {"skipped": str(why)}
    except checks.BadInput as why:  # an override variable the technique refuses to run under
        return {"refused": str(why)}
    # read back through the API the suite set them with: torch 2.13 raises on reading the legacy
    # allow_tf32 flags once fp32_precision has been set
    return {"flags": stages.tf32_state(), "dtype": run.dtype, "error": matmul_error("cuda")}


def probe():
    # a Run on a stand-in config: the precision functions read only its device
    run = t.Run(SimpleNamespace(device="cuda", world=World(), technique="gpu_check"), torch.nn.Identity())
    return {
        **env.capture("cuda"),
        "capability": list(torch.cuda.get_device_capability()),
        "gpus": torch.cuda.device_count(),
        "memory_mib": torch.cuda.get_device_properties(0).total_memory / MIB,
        "overrides": {name: os.environ.get(name) for name in OVERRIDES},
        "strict_fp32": reading(run, t.strict_fp32),
        "tf32": reading(run, t.tf32),  # after strict_fp32: it must turn on what strict_fp32 turned off
    }


if __name__ == "__main__":
    print(json.dumps(probe()))
