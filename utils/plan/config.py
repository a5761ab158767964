"""What a plan is for and how it is written down: the run config (MODEL auto means gpt2, the
GPU default), the GPU it is planned for, and its `predicted` row."""

import dataclasses

from utils import checks, devices, results
from utils.devices import by_key, peak_tflops
from utils.measure import config, env, preflight
from utils.measure.memory import columns
from utils.plan import parallel, planner
from utils.techniques import setup_of
from utils.techniques.parallel import World

ABSURD_BYTES = 2**40  # 1 TiB: several times the largest single GPU's memory
# host memory a plan's fake step holds: its fake tensors and its allocation trace. Measured
# (peak RSS growth, GPT2-XL B=4 T=256, 12 / 48 / 192 layers): 70 MiB + 0.51 MiB per block
# (the trace itself is a few MiB); taken at twice that, as a bound
TRACE_FIXED_BYTES = 140 * 2**20
TRACE_BLOCK_BYTES = 2**20


def check_batch(cfg):
    """Refuse a batch whose logits alone (B x T x vocab in bf16: materialised by every
    technique) outgrow any GPU: the plan would be absurd (and its sizes may overflow)."""
    logits = cfg.batch * cfg.seq * (cfg.vocab_size or 0) * 2 * cfg.accum
    if logits > ABSURD_BYTES:
        raise checks.BadInput(
            f"BATCH={cfg.batch} x SEQ={cfg.seq}: the logits alone would take {logits / 2**40:,.0f} TiB, "
            "more than any GPU holds; plan a smaller batch"
        )


def check_trace(cfg, available):
    """Refuse a plan whose fake step and trace would not fit in this machine's memory."""
    blocks = cfg.layers or 1
    need = TRACE_FIXED_BYTES + TRACE_BLOCK_BYTES * blocks
    if available is not None and need > available:
        raise checks.BadInput(
            f"a plan of {blocks:,} blocks holds about {need / 2**30:,.1f} GiB of fake tensors and trace on this "
            f"machine, which has {available / 2**30:,.1f} GiB available; plan fewer LAYERS"
        )


def planned_world(given):
    """The ranks a plan is for: PARALLEL= and NPROC= (rank 0 of NPROC GPUs), else one GPU."""
    kind = given.parallel
    nproc = given.nproc if kind or "NPROC" in given.given else 1
    parallel.check_world(kind, nproc)
    return World(kind, 0, 0, nproc) if kind else World()


def load_config(technique, given, world=None, **fields):
    """The run config a plan is for, from the settings `given` with `fields` over them (batch=4):
    MODEL auto means gpt2 (the GPU default), whatever this machine is; DEVICE is not asked (the
    plan is for a CUDA GPU); `world`: the ranks (None: PARALLEL= and NPROC=)."""
    model = fields.pop("model", "gpt2" if given.model == "auto" else given.model)
    given = dataclasses.replace(given, device="cpu", model=model, **fields)
    cfg = config.load(technique, given, world=world or planned_world(given))
    check_batch(cfg)
    check_trace(cfg, preflight.available_bytes("cpu"))
    return cfg


def runs_of(names, given):
    """(target, {name: config}): the one place a driver over several runs chooses between planning
    them for GPU= (the target; each refused now with NotModelled if the planner cannot model it)
    and measuring them on this machine (target None)."""
    if not given.plan:
        return None, {name: config.load(name, given) for name in names}
    target = load_target(given)
    cfgs = {name: load_config(name, given) for name in names}
    for name, cfg in cfgs.items():
        try:
            planner.check_modelled(setup_of(name)[1], cfg, target)
        except planner.NotModelled as why:  # which of the techniques, where a list was given
            raise planner.NotModelled(f"{name}: {why}") from None
    return target, cfgs


@dataclasses.dataclass(frozen=True)
class Target:
    """The GPU a plan is for and how its CUDA runtime is set up."""

    gpu: object  # a utils.devices.GPU
    allocator: str = "native"
    loading: str = "lazy"
    nodes: int = 1  # the nodes N GPUs span (collectives between nodes go over the network)
    # offloaded activations copied on side streams, hidden behind the compute where it is longer (torchtune's
    # OffloadActivations, use_streams); False: on the compute stream, which waits for them (offload_activations)
    offload_streams: bool = False


def gpu_of(key, given):
    """The GPU `key` of the table (ValueError if unknown), with the memory GPU_MEMORY_GIB= of the settings
    `given` where set (a card of another size)."""
    gpu, memory_gib = by_key(key), given.gpu_memory_gib
    if memory_gib is not None:
        gpu = devices.resized(gpu, memory_gib)
    return gpu


def load_target(given):
    """GPU=, GPU_MEMORY_GIB=, ALLOCATOR=, MODULE_LOADING= and NODES= of the settings `given`."""
    gpu = gpu_of(given.gpu, given)
    ranks = planned_world(given).size
    if given.nodes > 1 and ranks % given.nodes:
        raise checks.BadInput(f"NODES={given.nodes} does not divide the NPROC={ranks} GPUs planned")
    if ranks > devices.GPUS_PER_NODE * given.nodes:
        raise checks.BadInput(f"NPROC={ranks} on NODES={given.nodes} is {ranks // given.nodes} GPUs a node; the "
                              f"planner models nodes of at most {devices.GPUS_PER_NODE} (an HGX / DGX board): set "
                              f"NODES={devices.nodes_for(ranks)}")
    return Target(gpu, given.allocator, given.module_loading, given.nodes)


def where(target, world):
    """The GPU (and ranks) a plan is for, as its output says it."""
    ranks = f", rank 0 of {world.size} GPUs ({world.kind})" if world.kind else ""
    return f"{target.gpu.name} ({target.gpu.memory_gib:g} GiB{ranks})"


def planned_device(target):
    here = env.capture("cpu")
    return {**here, "device": f"{target.gpu.name} (planned on {here['device']})"}


def predicted_row(cfg, technique, plan, device):
    """A `predicted` row: the plan's breakdown (tensors) and what its GPU would show."""
    memory = plan.memory
    return results.identity(
        cfg, technique, device, status="ok", phase="predicted", kind="predicted", n_params=plan.n_params,
        flops_per_token=plan.flops_per_token, **plan.record, attention=plan.attention,
        **columns(plan.breakdown, plan.peak_mib), peak_alloc_mib=round(memory.allocated_mib, 1),
        peak_reserved_mib=round(memory.reserved_mib, 1), device_total_mib=round(memory.total_mib, 1),
        alloc_retries=memory.retries, **({"backend": "nccl"} if cfg.world.kind else {}),  # the GPUs' backend
        **_time_columns(plan, cfg),
    )


def model_tflops(plan):
    """(model TFLOP/s at the predicted step time, the GPU's dense peak at the plan's precision or None)."""
    return plan.flops_per_token * plan.time.tokens_per_s / 1e12, peak_tflops(plan.time.gpu, plan.record["dtype"])


def _time_columns(plan, cfg):
    """The predicted step time's columns (a roofline: utils/plan/timing.py), where planned."""
    step = plan.time
    if step is None:
        return {}
    tflops, peak = model_tflops(plan)
    world = cfg.world.size if cfg.world.kind else 1
    return {"step": 0, "step_ms": round(step.step_ms, 3), **{f"{p}_ms": round(ms, 3) for p, ms in step.ms.items()},
            "tokens_per_s": round(step.tokens_per_s * world), "device_tokens_per_s": round(step.tokens_per_s),
            "tflops": round(tflops, 2), "peak_tflops": peak, "mfu": round(tflops / peak, 4) if peak else None,
            **({"comm_ms": round(step.comm.total_ms, 3),
                "comm_exposed_ms": round(sum(step.comm.exposed_ms.values()), 3)} if step.comm else {})}
