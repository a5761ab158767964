"""One configuration planned, in a worker process: the figures make tune ranks by.

The planner (utils/plan/planner.py) runs the real step on fake tensors for the named GPU. A deep
model is first planned at 1 and 2 blocks (on N GPUs 3 and 4) and each figure extrapolated to its depth: a stack of
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

SCREEN_DEPTHS = (1, 2)  # one GPU
# N GPUs: FSDP2's first and last blocks are not its middle ones (the root and the last block stay unsharded
# after forward, the first all-gather is not prefetched), and a compiled block's graph differs at 1 and 2 blocks:
# measured on Llama 3.1 8B, 8 A100s, B=1, T=2048, against 32 blocks planned whole: eager flash+fused from 1 and 2
# blocks step -11% and exposed communication -78%, from 3 and 4 within 0.5%; compiled `stack` from 1 and 2
# allocated -35%, from 3 and 4 within 0.1%
SCREEN_DEPTHS_N = (3, 4)


def screen_depths(gpus):
    """The two depths a configuration on `gpus` GPUs is screened at."""
    return SCREEN_DEPTHS if gpus == 1 else SCREEN_DEPTHS_N


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
    screened: bool = False  # extrapolated from two depths (screen_depths)
    memory_kind: str = "eager"  # utils/plan/bands.py's kind of its memory figures, and of its step time
    step_kind: str = "eager"
    runs_in_budget: bool = True  # the step runs in the budget, the allocator releasing its cache where it must
    steady_retries: int = 0  # the allocator's cache releases each step at the GPU's own memory (last step planned)
    weights_mib: float = 0.0  # the weights held at the peak: what no memory saver or smaller micro-batch cuts
    # the optimizer state held at the peak: nor that (the saver that moves it to host memory, torchao's offload,
    # is one the planner refuses: utils/plan/planner.py check_modelled)
    optimizer_mib: float = 0.0

    def unfit(self, budget_mib):
        """Why it does not fit in `budget_mib`, or "" where it does. Screened: its least over the budget.
        Planned whole: out of memory in the budget (the allocator caches freed blocks while the GPU has room,
        so its device total may be above the budget where the step runs in it), or at the GPU's own memory the
        cache released every step (each release synchronises the GPU: its step time would not hold)."""
        if self.screened:
            return "" if self.least_mib <= budget_mib else "does not fit"
        if not self.runs_in_budget:
            return "does not fit"
        return "releases the allocator's cache every step" if self.steady_retries else ""

    def floor_exceeds(self, budget_mib):
        """Whether the weights, the optimizer state and the CUDA context alone pass `budget_mib`: then
        neither a memory saver the planner models (each cuts activations, gradients or their temporaries) nor
        a smaller micro-batch can make it fit."""
        return self.weights_mib + self.optimizer_mib + self.context_mib > budget_mib

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


def extrapolate(low, high, depths, depth):
    """The figures at `depth` blocks from those at the two `depths` (`low` and `high`): affine in the depth."""
    def at(a, b):
        return b + (depth - depths[1]) * (b - a) / (depths[1] - depths[0])

    return dataclasses.replace(
        high, allocated_mib=at(low.allocated_mib, high.allocated_mib),
        reserved_mib=at(low.reserved_mib, high.reserved_mib),
        total_mib=at(low.total_mib, high.total_mib), weights_mib=at(low.weights_mib, high.weights_mib),
        optimizer_mib=at(low.optimizer_mib, high.optimizer_mib),
        ms={p: at(low.ms[p], high.ms[p]) for p in high.ms},
        comm_ms=at(low.comm_ms, high.comm_ms), exposed_ms=at(low.exposed_ms, high.exposed_ms),
        flops_per_token=round(at(low.flops_per_token, high.flops_per_token)), seconds=low.seconds + high.seconds,
        screened=True)


def budget_mib(gpu, given):
    """What a configuration may use of `gpu`: its memory less MEMORY_MARGIN (the planner's errors), MiB."""
    return gpu.memory_gib * 1024 * (1 - given.memory_margin)


def plan(given, config, gpu_key, depth):
    """Plan `config` (space.Config) on GPU `gpu_key` at `depth` blocks (None: the model's own)
    with the settings `given`: Figures, or the one line saying why the planner could not
    (NotModelled, a setting refused, or the error)."""
    from utils import checks
    from utils.plan import bands, planner
    from utils.plan.config import Target, gpu_of, load_config
    from utils.plan.device import runs_within
    from utils.techniques import setup_of
    from utils.techniques.parallel import World

    world = World(config.parallel, 0, 0, config.gpus) if config.gpus > 1 else World()
    fields = {"batch": config.batch, "accum": config.accum, **({"layers": depth} if depth else {})}
    fields.update(config.compile_fields())
    start = time.perf_counter()
    try:
        cfg = load_config(config.full_name, given, world=world, **fields)
        gpu = gpu_of(gpu_key, given)
        target = Target(gpu, given.allocator, given.module_loading, config.nodes)
        found = planner.plan(setup_of(config.full_name)[1], cfg, target)
    except planner.NotModelled as why:
        return f"not modelled: {why}"
    except checks.BadInput as why:  # the settings' own refusal (CUDA graphs with accumulation, ...): no plan
        return f"refused by its settings: {why}"
    except Exception as err:  # noqa: BLE001 - one configuration's failure must not stop the search
        return f"failed: {type(err).__name__}: {(str(err).strip().splitlines() or [''])[0][:160]}"
    memory, step = found.memory, found.time
    # within the budget at the GPU's own memory, it never reached the budget: no second replay needed
    budget = budget_mib(gpu, given)
    return Figures(
        allocated_mib=memory.allocated_mib, reserved_mib=memory.reserved_mib, total_mib=memory.total_mib,
        context_mib=memory.total_mib - memory.reserved_mib, ms=dict(step.ms), tokens=step.tokens,
        flops_per_token=found.flops_per_token, dtype=found.record["dtype"],
        comm_ms=step.comm.total_ms if step.comm else 0.0,
        exposed_ms=sum(step.comm.exposed_ms.values()) if step.comm else 0.0, seconds=time.perf_counter() - start,
        memory_kind=bands.kind_of(found, "allocated"), step_kind=bands.kind_of(found, "step time"),
        runs_in_budget=memory.total_mib <= budget or runs_within(found, target, budget),
        steady_retries=memory.steady_retries, weights_mib=found.breakdown["params"],
        optimizer_mib=found.breakdown["optimizer"])
