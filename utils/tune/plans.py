"""One configuration planned, in a worker process: the figures make tune ranks by.

The planner (utils/plan/planner.py) runs the real step on fake tensors for the named GPU. A deep
model is first planned at 1 and 2 blocks and each figure extrapolated to its depth: a stack of
identical blocks adds the same tensors, ops and kernels per block, so allocated memory and step
time are affine in the depth (measured on this machine: GPT-2 at 12 blocks and GPT2-XL at 48,
eager and compiled, within 0.2% of the full plan). The caching allocator's reserved memory is not
(its segments are reused otherwise at another depth: up to 29% off), so a screened configuration
fits only if its allocated memory and the CUDA context do (reserved >= allocated: a bound), and
the configurations that rank first are planned again at full depth, their reserved memory and
device total then replayed exactly.
"""

import dataclasses
import time
import warnings

SCREEN_DEPTHS = (1, 2)


@dataclasses.dataclass(frozen=True)
class Figures:
    """A plan's figures, per GPU (MiB, ms); `depth`: the blocks planned ("screened": extrapolated)."""

    allocated_mib: float
    reserved_mib: float
    total_mib: float
    context_mib: float  # the device total beyond reserved: the CUDA context (and paged state resident)
    ms: dict  # phase -> ms
    tokens: int  # per step, per GPU
    flops_per_token: int
    dtype: str
    comm_ms: float = 0.0
    exposed_ms: float = 0.0
    seconds: float = 0.0  # what planning it took here
    screened: bool = False  # extrapolated from 1 and 2 blocks
    memory_kind: str = "eager"  # utils/plan/bands.py's kind of its memory figures, and of its step time
    step_kind: str = "eager"

    @property
    def step_ms(self):
        return sum(self.ms.values())

    @property
    def tokens_per_s(self):
        return self.tokens / (self.step_ms / 1e3)

    @property
    def least_mib(self):
        """What the device must hold at least: allocated (<= reserved) and the context."""
        return self.allocated_mib + self.context_mib

    @property
    def device_mib(self):
        """The device memory it is judged by: its device total where planned whole, its least where screened."""
        return self.least_mib if self.screened else self.total_mib


def extrapolate(one, two, depth):
    """The figures at `depth` blocks from those at 1 and 2: affine in the depth."""
    def at(a, b):
        return a + (depth - 1) * (b - a)

    return dataclasses.replace(
        two, allocated_mib=at(one.allocated_mib, two.allocated_mib),
        reserved_mib=at(one.reserved_mib, two.reserved_mib),
        total_mib=at(one.total_mib, two.total_mib), ms={p: at(one.ms[p], two.ms[p]) for p in two.ms},
        comm_ms=at(one.comm_ms, two.comm_ms), exposed_ms=at(one.exposed_ms, two.exposed_ms),
        flops_per_token=round(at(one.flops_per_token, two.flops_per_token)), seconds=one.seconds + two.seconds,
        screened=True)


def quiet_worker():
    """A worker's set-up: one thread (the workers share this machine's cores), no warnings."""
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")


def plan(given, config, gpu_key, depth):
    """Plan `config` (space.Config) on GPU `gpu_key` at `depth` blocks (None: the model's own)
    with the settings `given`: Figures, or the one line saying why the planner could not
    (NotModelled, or the error)."""
    from utils.devices import by_key
    from utils.plan import bands, planner
    from utils.plan.config import Target, load_config
    from utils.techniques import setup_of
    from utils.techniques.parallel import World

    world = World(config.parallel, 0, 0, config.gpus) if config.gpus > 1 else World()
    fields = {"batch": config.batch, "accum": config.accum, **({"layers": depth} if depth else {})}
    if config.compile_mode:
        fields["compile_mode"] = config.compile_mode
    start = time.perf_counter()
    try:
        cfg = load_config(config.full_name, given, world=world, **fields)
        gpu = by_key(gpu_key)
        if given.gpu_memory_gib is not None:
            gpu = dataclasses.replace(gpu, name=f"{gpu.name} at {given.gpu_memory_gib:g} GiB",
                                      memory_gib=given.gpu_memory_gib)
        target = Target(gpu, given.allocator, given.module_loading, given.nodes)
        found = planner.plan(setup_of(config.full_name)[1], cfg, target)
    except planner.NotModelled as why:
        return f"not modelled: {why}"
    except Exception as err:  # noqa: BLE001 - one configuration's failure must not stop the search
        return f"failed: {type(err).__name__}: {(str(err).strip().splitlines() or [''])[0][:160]}"
    memory, step = found.memory, found.time
    return Figures(
        allocated_mib=memory.allocated_mib, reserved_mib=memory.reserved_mib, total_mib=memory.total_mib,
        context_mib=memory.total_mib - memory.reserved_mib, ms=dict(step.ms), tokens=step.tokens,
        flops_per_token=found.flops_per_token, dtype=found.record["dtype"],
        comm_ms=step.comm.total_ms if step.comm else 0.0,
        exposed_ms=sum(step.comm.exposed_ms.values()) if step.comm else 0.0, seconds=time.perf_counter() - start,
        memory_kind=bands.kind_of(found, "allocated"), step_kind=bands.kind_of(found, "step time"))
