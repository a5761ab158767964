"""Before a measured run trains: refuse one that cannot fit, with the arithmetic.

The model states what any training step of it must hold at once, whatever the technique (its
`least_bytes`: fp32 weights and gradients, the logits, manual attention's T x T scores for a
layer, each at the narrowest dtype any technique uses). That is a lower bound, so a run whose
lower bound exceeds the memory available (a GPU's free memory, or a CPU's MemAvailable) cannot
fit by a wide margin and is refused; a run that may fit runs and is judged by the allocator.
"""

from pathlib import Path

import torch

from utils import checks, models
from utils.units import GIB


def available_bytes(device):
    """Memory the run may use on the device it trains on (None where it cannot be read). On a
    GPU: what is free plus what this process's allocator already holds, the model's weights
    among them, which the lower bound counts too (free alone would count them twice)."""
    if device == "cuda":
        return torch.cuda.mem_get_info()[0] + torch.cuda.memory_reserved()
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def shapes_only(cfg):
    """cfg's model built on the meta device (shapes, no memory) to check before the real one is built:
    a SEQ or LAYERS too large for the machine is refused, not met as an out-of-memory in the build. None
    for a file's model, whose build may need real tensors: it is checked once built."""
    if models.arch(cfg.model) == "file":
        return None
    with torch.device("meta"):
        return models.build_model(cfg.model, cfg.seq, layers=cfg.layers, blocks=cfg.blocks)


def check(model, cfg):
    """Raise checks.BadInput if the lower bound of a step of `model` at cfg's shape outgrows the memory
    available."""
    least = model.least_bytes(cfg.batch, cfg.seq)
    available = available_bytes(cfg.device)
    if available is None or sum(least.values()) <= available:
        return
    parts = ", ".join(f"{name} {size / GIB:,.1f}" for name, size in least.items())
    where = "this GPU has" if cfg.device == "cuda" else "this machine has"
    raise checks.BadInput(
        f"this run cannot fit: it needs at least {sum(least.values()) / GIB:,.1f} GiB ({parts}) at B={cfg.batch} "
        f"T={cfg.seq}, and {where} {available / GIB:,.1f} GiB available; lower BATCH or SEQ (LAYERS, where the "
        "weights are most of it)"
        + (", or use flash (no T x T scores)" if any("T x T" in name for name in least) else "")
    )
