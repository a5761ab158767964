"""What a run's memory is made of: a MemTracker breakdown of one extra step, and the CUDA
caching allocator's health.

The breakdown comes from one step taken after the measured phase, under PyTorch's own
`MemTracker` (parameters, gradients, optimizer state, activations and temporaries at the
step's peak). The tracker sees every op, which slows the step it watches, so that step is
never timed: the measured steps ran before it without the tracker, and their peak memory was
read before it. The columns carry the same values on every row of the run.

torch.compile'd kernels and CUDA graph replays allocate where the tracker cannot see (below
the dispatcher), so those runs get no breakdown rather than a wrong one.
"""

import contextlib
import warnings

import torch
from torch._guards import active_fake_mode
from torch.distributed._tools.common_utils import get_untyped_storages
from torch.distributed._tools.mem_tracker import _TOTAL_KEY, MemTracker, _UpdateType
from torch.utils.weak import WeakIdKeyDictionary

from utils.results import MEMORY_PARTS
from utils.units import MIB

# PEFT's LoRA on a MoE block's expert weights (a parametrization) runs backward through a module its hooks can no
# longer name: ModTracker says it skips its per-module hooks; the totals (tensors by storage) count it all the same
warnings.filterwarnings("ignore", message="Module is None. Skipping (PRE|POST)_BW hook")


def breakdown_mib(snapshot):
    """A MemTracker device snapshot (bytes by reference type) -> the suite's five parts, MiB.
    Buffers count with parameters; 'Other' (external tensors: the batch) with temporaries."""
    kinds = {str(k.value) if hasattr(k, "value") else str(k): v for k, v in snapshot.items()}
    parts = {
        "params": kinds.get("Parameter", 0) + kinds.get("Buffer", 0),
        "grads": kinds.get("Gradient", 0),
        "optimizer": kinds.get("Optstate", 0),
        "activations": kinds.get("Activation", 0),
        "temporaries": kinds.get("Temp", 0) + kinds.get("Other", 0),
    }
    return {name: round(value / MIB, 1) for name, value in parts.items()}


class _NoHook:
    """The handle of a hook never registered (PeakTracker's frozen parameters)."""

    def remove(self):
        return None


_NO_HOOK = _NoHook()


class PeakTracker(MemTracker):
    """PyTorch's MemTracker keeping only what the suite reads: the whole step's peak (its
    per-module peaks scan every module at every op, 80% of a GPT2-XL plan's time), and, with
    `record=True`, every allocation and free in order (`events`: (storage key, bytes), bytes
    negative for a free; an allocation made while `pool` names a CUDA graph's private pool carries
    it as a third element) for the caching allocator's replay (utils/plan/allocator.py)."""

    def __init__(self, record=False, on_op=None):
        super().__init__()
        self.events = [] if record else None
        self.unmaterialised = False  # the planner's compiled graphs: an op inductor would fuse away
        self.pool = None  # the private pool allocations come from while a CUDA graph is captured
        self.on_op = on_op  # (func, args, kwargs, out, phase) per op the step runs: the planner's timing
        self.step_fake_mode = None  # the fake mode the step runs under (None in eager), taken on the first entry
        # storages outside PyTorch's allocator (bitsandbytes' paged state, in unified memory): never tracked
        self.off_device = WeakIdKeyDictionary()
        self._entered = 0

    def __enter__(self):
        # an op under another fake mode (DTensor's sharding propagation) is no work of the step's;
        # torch 2.13's MemTracker keeps the same as a private attribute that torch 2.11's lacks
        if not self._entered:
            self.step_fake_mode = active_fake_mode()
        self._entered += 1
        return super().__enter__()

    def __exit__(self, *args):
        self._entered -= 1
        return super().__exit__(*args)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = super().__torch_dispatch__(func, types, args, kwargs)
        if (self.on_op is not None and out is not NotImplemented and not self.unmaterialised
                and active_fake_mode() is self.step_fake_mode):
            self.on_op(func, args, kwargs or {}, out, self.phase)
        return out

    @property
    def phase(self):
        """The step's phase now: optimizer (a tracked optimizer steps), backward or forward."""
        return "optimizer" if self._in_opt else "backward" if self._mod_tracker.is_bw else "forward"

    def _track_module_params_and_buffers(self, module, install_grad_hooks=True):
        # MemTracker hooks every parameter's gradient, and register_hook refuses a parameter that
        # needs none (torch's mem_tracker.py): a frozen one (LoRA's base) is marked hooked, with nothing
        for param in module.parameters():
            if not param.requires_grad and self._param_to_grad_hook_handles.get(param) is None:
                self._param_to_grad_hook_handles[param] = (_NO_HOOK, _NO_HOOK)
        return super()._track_module_params_and_buffers(module, install_grad_hooks)

    def _off_device(self, t):
        return bool(self.off_device) and all(st in self.off_device for st in get_untyped_storages(t))

    def _update_and_maybe_create_winfos(self, t, reftype, update_existing=False):
        if not isinstance(t, torch.Tensor) or self._off_device(t):  # None: an optimizer's state not made yet
            return set()
        return super()._update_and_maybe_create_winfos(t, reftype, update_existing)

    def _track(self, reftype, t):
        if not self.unmaterialised and not self._off_device(t):
            super()._track(reftype, t)

    @classmethod
    def ignore_compile_internals(cls):
        # dynamo runs compiled code only with no such mode on the stack; the planner enters
        # the tracker around each compiled graph instead (utils/plan/compiled.py)
        return True

    def _update_peak_stats(self, peak_state):
        for device, snap in self._curr_mem_snap.items():
            if self._peak_mem.get(device, 0) < snap[_TOTAL_KEY]:
                self._peak_mem[device] = snap[_TOTAL_KEY]
                self._peak_mem_snap[device] = dict(snap)

    def _update_snap(self, u_type, winfo, old_mem_consumed=None, old_reftype=None):
        super()._update_snap(u_type, winfo, old_mem_consumed=old_mem_consumed, old_reftype=old_reftype)
        if self.events is None or u_type == _UpdateType.REF:
            return
        key = id(winfo)
        if u_type == _UpdateType.SIZE:  # a storage resized (FSDP2 frees and refills its unsharded ones)
            self.events.append((key, -old_mem_consumed))
        if u_type == _UpdateType.DEL:
            self.events.append((key, -winfo.mem_consumed))
        else:
            self.events.append((key, winfo.mem_consumed) if self.pool is None else (key, winfo.mem_consumed, self.pool))


@contextlib.contextmanager
def one_iteration_per_forward(tracker, root):
    """MemTracker refuses a second forward of the root module in one iteration; gradient
    accumulation makes one per micro-batch. Reset its per-module stats (not its peak) before
    each: a global hook registered before the tracker's runs first."""

    def reset(module, args):
        if torch.compiler.is_compiling():
            return  # a module called inside a compiled graph: not the root, and dynamo must not trace the test
        if module is root and root in tracker.memory_tracking:
            tracker.reset_mod_stats()

    handle = torch.nn.modules.module.register_module_forward_pre_hook(reset)
    try:
        with tracker:
            yield
    finally:
        handle.remove()


def columns(parts, peak_mib):
    """A breakdown {part: MiB} and the tracker's peak -> results.csv columns."""
    return {**{f"mem_{part}_mib": parts[part] for part in MEMORY_PARTS}, "mem_peak_mib": round(peak_mib, 1)}


def untrackable(run):
    """Why this run's memory cannot be tracked op by op, or None if it can."""
    if run.compile_mode:
        return "torch.compile's kernels allocate below the dispatcher, where MemTracker cannot see"
    if run.step.graphed:
        return "a CUDA graph replay allocates nothing the tracker can see"
    return None


def device_optimizers(optimizer):
    """The optimizers whose state MemTracker can follow: the optimizer itself, or, for torchao's
    CPUOffloadOptimizer (which never calls Optimizer.__init__, so has no `state`), the one it
    keeps on the device for the small parameters, `d_opt` (torchao/optim/cpu_offload.py); the
    host-side optimizers' state is in host memory, outside every device figure."""
    if optimizer is None:
        return []
    if hasattr(optimizer, "optimizers"):  # stepped in backward: one optimizer per parameter (in_backward.py)
        return list(optimizer.optimizers)
    if hasattr(optimizer, "state"):
        return [optimizer]
    return [opt for opt in [getattr(optimizer, "d_opt", None)] if opt is not None]


def tracked_step(run, batches):
    """Take one more (untimed) step under MemTracker; return its breakdown columns, or {} if
    the run cannot be tracked."""
    if untrackable(run):
        return {}
    micro_batches = [next(batches) for _ in range(run.accum)]  # outside the tracker, as the planner's
    tracker = PeakTracker()
    tracker.track_external(run.model, *device_optimizers(run.optimizer))
    with one_iteration_per_forward(tracker, run.model):
        run.step(run, micro_batches)
    snapshot = tracker.get_tracker_snapshot("peak")
    device = next((d for d in snapshot if d.type == run.cfg.device), None)
    if device is None:
        return {}
    return columns(breakdown_mib(snapshot[device]), snapshot[device][_TOTAL_KEY] / MIB)


def allocator_health(device):
    """CUDA: the caching allocator's retries (it freed its cache and tried again: a slow
    step) and OOMs so far in the process, as torchtitan logs them; {} on a CPU."""
    if device != "cuda":
        return {}
    stats = torch.cuda.memory_stats()
    return {"alloc_retries": stats.get("num_alloc_retries", 0), "alloc_ooms": stats.get("num_ooms", 0)}
