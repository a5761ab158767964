"""`make plan`: the peak GPU memory of a training step, predicted on any machine.

The technique's own setup builds the model and optimizer, then real training steps run
(forward, loss, backward, optimizer step, zero_grad: the suite's EagerStep) under
`FakeTensorMode`: every tensor has its shape, dtype and storage but no data, so nothing is
allocated and no GPU is needed. PyTorch's `MemTracker` follows every storage and reports
the peak split into parameters, gradients, optimizer state, activations and temporaries.
Two steps run: the optimizer state only exists from the first step on.

The fake tensors live on the CPU device (a CPU-only torch cannot run autograd over fake
CUDA tensors: its autograd engine asks for a CUDA stream). Where CPU and CUDA kernels differ
in what they allocate, the CUDA side is modelled (`CUDA_MODEL` lists each point), and what
could not be modelled is said (`NOT_MODELLED`; both in utils/plan/cuda.py); a technique whose memory the planner cannot
model is refused, never guessed. torch.compile is planned from AOTAutograd's partition with
fusion modelled (utils/plan/compiled.py); N GPUs as rank 0 of a fake process group
(utils/plan/parallel.py).
"""

import contextlib
import dataclasses
import functools
import warnings

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.distributed._tools.mem_tracker import _TOTAL_KEY

from utils import checks, registry
from utils.measure.memory import PeakTracker, breakdown_mib, device_optimizers, one_iteration_per_forward
from utils.plan.comm import comm_time, with_buckets
from utils.plan.compiled import Graphs, plan_compile, quiet_global_hooks
from utils.plan.cuda import (
    cuda_autocast_policy,
    cuda_dropout,
    cuda_optimizer_defaults,
    cuda_rounding,
    cuda_sdpa_dropout,
    planned_gpu,
    real_bitsandbytes_qmaps,
    real_torchao_qmaps,
    scaler_steps_without_infs,
)
from utils.plan.cudagraphs import COMPILED, STEP, plan_cuda_graph_step
from utils.plan.device import device_memory
from utils.plan.fakes import fake_modules_converted_in_place, offloaded_activations, paged_states
from utils.plan.machine import synced_host_us
from utils.plan.parallel import DDPBuckets, fake_world, side_streams
from utils.plan.timing import OpRecorder, SyncedSteps, step_time
from utils.techniques.run import Skip, new_run
from utils.units import MIB

STEPS = 2  # step 1 creates the optimizer state; step 2 is the steady state


class NotModelled(ValueError):
    """The planner cannot predict this technique's memory; str(self) says why."""


@dataclasses.dataclass
class Plan:
    peak_bytes: int  # the tensors' peak (the tracker's)
    breakdown: dict  # params, grads, optimizer, activations, temporaries (MiB) at the peak
    record: dict  # what ran, in results.csv's terms (utils.techniques.Run.record)
    attention: str  # the attention kernel CUDA would run
    n_params: int
    flops_per_token: int
    events: list = dataclasses.field(repr=False, default=None)  # the step's allocations and frees, in order
    last_step_at: int = 0  # where the last planned step's events start: the steady state's
    memory: object = None  # on the target GPU (utils.plan.device.DeviceMemory), where one was given
    ops: list = dataclasses.field(repr=False, default=None)  # the last step's ops (utils.plan.timing.Op)
    tf32: bool = False  # fp32 matmuls on TF32 tensor cores
    graphed: str = None  # what replays as CUDA graphs (utils/plan/cudagraphs.py: STEP, COMPILED), or None
    time: object = None  # on the target GPU (utils.plan.timing.StepTime), where one was given
    unified_bytes: int = 0  # CUDA unified memory outside the allocator (bitsandbytes' paged optimizer state)

    @property
    def peak_mib(self):
        return round(self.peak_bytes / MIB, 1)


def refuse_unmodelled(run):
    if run.compile_mode == "max-autotune":
        raise NotModelled("torch.compile mode max-autotune: its kernels are the winners of timing Triton templates on "
                          "the GPU, unknowable without it; plan COMPILE_MODE=reduce-overhead (the same CUDA graphs, "
                          "inductor's default kernels), or measure it on the GPU")


# technique functions the planner does not run on fake tensors, and why
UNPLANNED = {"offload_adamw": "offload: torchao's CPUOffloadOptimizer keeps AdamW's state in host memory and steps on "
             "the CPU (pinned buffers, a CUDA stream): not modelled; measure it on the GPU"}


def _functions(technique):
    """The technique functions `technique` calls, where it is one the catalog knows."""
    try:
        return registry.functions_of(technique)
    except checks.BadInput:
        return set()


def _set_up(setup, cfg, model_cuda, target=None, graphs=Graphs):
    """The technique applied to a model built on the (fake) CPU device, through the same path
    as training (utils.techniques.run.new_run), its capability checks answered as `target`'s
    GPU (utils.plan.config.Target; None: an Ampere-or-newer one), its compiled graphs run by
    `graphs` (a compiled.Graphs class, given the GPU); raises NotModelled."""
    unplanned = UNPLANNED.keys() & _functions(cfg.technique)
    if unplanned:
        raise NotModelled(UNPLANNED[unplanned.pop()])
    # inductor schedules the compiled graphs as on the planned GPU (their kernels time the step)
    run = new_run(dataclasses.replace(cfg, device="cuda") if model_cuda else cfg)
    graphs = graphs(target.gpu if target and model_cuda else None)
    gpu = planned_gpu(target.gpu.capability) if target else planned_gpu()
    try:
        with gpu if model_cuda else contextlib.nullcontext(), plan_compile(graphs), fake_modules_converted_in_place():
            setup(run)
    except Skip as why:  # a capability of the GPU, or of the model (no projection LoRA would adapt)
        where = f"as planned for {target.gpu.name}" if target else "as planned here, without a GPU"
        raise NotModelled(f"the technique skips {where}: {why}") from None
    refuse_unmodelled(run)
    return run, graphs


def check_modelled(setup, cfg, target=None):
    """Raise NotModelled now (the setup alone, on fake tensors: no step) if plan() would."""
    with fake_world(cfg.world), FakeTensorMode(allow_non_fake_inputs=True), real_bitsandbytes_qmaps():
        _set_up(setup, cfg, model_cuda=True, target=target)


def _tracked_steps(run, cfg, steps, model_cuda, buckets, graphs):
    """Take `steps` fake training steps under the tracker (recording every allocation and
    free); return it, the unified memory's bytes and the index of the last step's first event.
    One step goes first, untracked, under FSDP2 (DTensor's sharding
    propagation runs each op's first call once more on whole-size tensors, on the active fake
    mode, where the tracker cannot tell them from the step's; on a GPU they are fake) and
    under torch.compile (dynamo does not trace under the tracker's dispatch mode: the first
    step compiles, the tracked ones run the compiled graphs; an optimizer's too, torchao's)."""
    micro = [(torch.zeros(cfg.batch, cfg.seq, dtype=torch.long),) * 2 for _ in range(run.accum)]  # token 0
    tracker = PeakTracker(record=True, on_op=OpRecorder())
    if run.activation_offload:  # saved to the host: off the planned device until backward needs them
        run.saved_tensors = functools.partial(offloaded_activations, run.model, tracker if model_cuda else None)
    if run.step.graphed:
        plan_cuda_graph_step(run.step, tracker)
    paged = []  # bytes of bitsandbytes' paged state, in unified memory: off the allocator's books
    cuda = (cuda_rounding(), cuda_autocast_policy(), cuda_sdpa_dropout(), cuda_dropout(), scaler_steps_without_infs(),
            paged_states(tracker, paged), side_streams(tracker)) if model_cuda else ()
    with contextlib.ExitStack() as stack:
        for context in (*cuda, quiet_global_hooks()):
            stack.enter_context(context)
        if cfg.world.kind == "fsdp" or run.compile_mode or run.optimizer_compiles:
            run.step(run, micro)
        tracker.track_external(run.model, *device_optimizers(run.optimizer))
        graphs.mode = tracker  # compiled graphs run under it (dynamo itself runs with it set aside)
        stack.enter_context(one_iteration_per_forward(tracker, run.train_model))
        for step in range(steps):
            last_step_at = len(tracker.events)
            if buckets:
                buckets.before_step(step, tracker.events)
            tracker.on_op.ops.clear()  # the timing is the last step's: the steady state
            run.step(run, micro)
    return tracker, sum(paged), last_step_at


def plan(setup, cfg, target=None, steps=STEPS, model_cuda=True, graphs=Graphs):
    """Predict the peak CUDA memory of `setup` (a script's setup function) at cfg's
    model / batch / seq / accum, and with a `target` (utils.plan.config.Target) what that GPU
    would reserve and show. Raises NotModelled for what it cannot predict. model_cuda=False
    plans the step as this CPU runs it (to check the planner against a real run here);
    `graphs`: what runs its compiled graphs (utils/plan/codegen_check.py compares each)."""
    with fake_world(cfg.world), FakeTensorMode(allow_non_fake_inputs=True), real_bitsandbytes_qmaps():
        run, graphs = _set_up(setup, cfg, model_cuda, target, graphs)
        real_torchao_qmaps()
        tf32 = run.dtype == "tf32"  # as the technique set it
        buckets = DDPBuckets.take(run)
        run.cfg = dataclasses.replace(cfg, device="cpu")  # the autocast the step enters: CPU's, with CUDA's policy
        if model_cuda:
            cuda_optimizer_defaults(run.optimizer)
        with plan_compile(graphs):  # what the step compiles as it runs (an optimizer's step)
            tracker, unified_bytes, last_step_at = _tracked_steps(run, cfg, steps, model_cuda, buckets, graphs)
        snapshot = next(iter(tracker.get_tracker_snapshot("peak").values()))
    attention = run.model.attention
    result = Plan(
        peak_bytes=snapshot[_TOTAL_KEY],
        breakdown=breakdown_mib(snapshot),
        record=run.record(),
        # on CUDA in half precision SDPA dispatches to its flash kernel at these shapes
        attention="sdpa:flash" if attention == "sdpa" and run.autocast_dtype else attention,
        n_params=run.model.num_params(),
        flops_per_token=run.flops_per_token(cfg.seq),
        events=tracker.events,
        last_step_at=last_step_at,
        ops=tracker.on_op.ops,
        tf32=tf32,
        graphed=STEP if run.step.graphed else COMPILED if run.graphed else None,
        unified_bytes=unified_bytes,
    )
    if target is not None:
        result.memory = device_memory(result, target)
        tokens = cfg.batch * cfg.seq * run.accum
        result.time = step_time(result.ops, target.gpu, tokens, result.tf32, result.graphed,
                                synced=synced_steps(run.optimizer), comm=comm_of(result, cfg.world, target, buckets),
                                copies_overlap=target.offload_streams)
    return result


def comm_of(plan, world, target, buckets=None):
    """N GPUs: the step's collectives on the planned links (utils/plan/comm.py); None for one."""
    if not world.kind:
        return None
    ops = with_buckets(plan.ops, buckets.rebuilt(), target.gpu, plan.tf32) if buckets else plan.ops
    return comm_time(ops, target.gpu, world.size, target.nodes, plan.tf32)


def synced_steps(optimizer):
    """timing.SyncedSteps for an optimizer that waits for the GPU after every parameter
    (bitsandbytes'), its host time per parameter measured here; None for any other."""
    try:
        from bitsandbytes.optim.optimizer import Optimizer8bit
    except ImportError:
        return None
    if not isinstance(optimizer, Optimizer8bit):
        return None
    params = sum(1 for group in optimizer.param_groups for p in group["params"] if p.requires_grad)
    return SyncedSteps(params, _bitsandbytes_host_us(type(optimizer)))


BITSANDBYTES_UPDATES = ("optimizer_update_8bit_blockwise", "optimizer_update_32bit")  # torch.ops.bitsandbytes.*


@functools.cache
def _bitsandbytes_host_us(optimizer_class):
    """synced_host_us of a bitsandbytes optimizer, its update ops dispatched to CPU kernels that do
    nothing: its Python down to the dispatcher's call of a kernel, as on CUDA; measured once per
    process (make maxbatch and plan_check plan the same optimizer many times)."""
    return synced_host_us(optimizer_class, [_kernels_doing_nothing(BITSANDBYTES_UPDATES)])


@contextlib.contextmanager
def _kernels_doing_nothing(names):
    """torch.ops.bitsandbytes.<name> dispatched, on CPU tensors, to a kernel that does nothing
    while this lasts; bitsandbytes' own CPU kernels (chains of eager ops: no stand-in for CUDA's
    one kernel each) afterwards. The registrations live as long as the library that holds them."""
    library = torch.library.Library("bitsandbytes", "FRAGMENT")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns of the override it is asked for
            for name in names:
                torch.library.register_kernel(f"bitsandbytes::{name}", "cpu", lambda *args, **kwargs: None,
                                              lib=library)
        yield
    finally:
        library._destroy()  # the registrations undone: the CPU kernels are bitsandbytes' again
