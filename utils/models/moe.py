"""Mixture-of-experts layers on the fake tensors the suite counts FLOPs and plans memory on.

transformers runs a MoE block's experts as grouped matmuls (`torch._grouped_mm`,
transformers/integrations/moe.py): the routed tokens sorted by expert, each group of rows against
its expert's weights, one op, whichever experts the router picked (shapes do not depend on the
routing, so fake tensors plan it exactly). Two things torch lacks for it, added here once, at import:

- its meta kernel (torch/_meta_registrations.py, `_meta_grouped_mm_common`) checks the CUDA fast
  path's bf16 inputs, while CUDA's kernel takes fp32 and fp16 too, through a loop of mm over the
  groups (aten/src/ATen/native/cuda/GroupedBlas.cpp, `_grouped_mm_fallback`), and so does the CPU's:
  on fake tensors any float dtype gets the output the bf16 meta gives, at its own dtype;
- the flop counter (torch/utils/flop_counter.py) has no formula for it: the experts' matmuls, most
  of a MoE model's FLOPs, went uncounted.
"""

import math
import warnings

import torch
from torch._subclasses.fake_impls import register_op_impl
from torch._subclasses.fake_tensor import in_kernel_invocation_manager
from torch.utils.flop_counter import flop_registry, register_flop_formula

GROUPED_MM = torch.ops.aten._grouped_mm
# compiled, transformers' MoE dispatch (its moe.py) calls a cached check of torch's version, which dynamo warns of
# at length on every compile: transformers' code, the same answer on every call
CACHED_CHECK = r"Dynamo detected a call to a .functools.lru_cache.-wrapped function at 'moe\.py"
warnings.filterwarnings("ignore", message=CACHED_CHECK)


def _as_bf16_meta(tensor):
    return None if tensor is None else torch.empty_strided(tensor.shape, tensor.stride(), dtype=torch.bfloat16,
                                                           device="meta")


@register_op_impl(GROUPED_MM.default)
def _grouped_mm_any_float(fake_mode, func, mat_a, mat_b, offs=None, bias=None, out_dtype=None):
    if mat_a.dtype == mat_b.dtype == torch.bfloat16 or not mat_a.dtype.is_floating_point:
        return NotImplemented  # torch's own meta kernel
    offs_meta = None if offs is None else torch.empty(offs.shape, dtype=offs.dtype, device="meta")
    with in_kernel_invocation_manager(fake_mode):
        shaped = func(_as_bf16_meta(mat_a), _as_bf16_meta(mat_b), offs_meta, _as_bf16_meta(bias))
    out = torch.empty_strided(shaped.shape, shaped.stride(), dtype=out_dtype or mat_a.dtype, device="meta")
    return fake_mode.fake_tensor_converter.from_meta_and_device(fake_mode, out, mat_a.device)


def expert_weights(module):
    """{name: parameter} of `module`'s MoE experts: the 3-D weights (one matrix per expert) of the modules that
    hold `num_experts` (transformers' experts modules, transformers/integrations/moe.py), found once for all
    who ask (host syncs, LoRA's and NF4's targets). A file model's other 3-D weights (a Conv1d's) are not experts."""
    found = {}
    for owner, m in module.named_modules():
        if hasattr(m, "num_experts"):
            weights = dict(m.named_parameters(recurse=False))
            # a parametrized stack (QLoRA's, stored in NF4) as the grouped matmuls read it, described on the meta
            # device where the parametrization says (every layer's stacks dequantised at once would not fit)
            for name, chain in getattr(m, "parametrizations", {}).items():
                weights[name] = chain[-1].reads_as if hasattr(chain[-1], "reads_as") else getattr(m, name)
            found.update({f"{owner}.{name}" if owner else name: w for name, w in weights.items() if w.dim() == 3})
    return found


def host_synced(module):
    """Why `module`'s grouped matmuls would sync the host on this GPU, or None (no experts; bf16 ones where CUDA
    has its grouped kernel). CUDA's `_grouped_mm` runs its CUTLASS kernel, "no d2h sync needed", for bf16 inputs
    on compute capability 9.x and 10.x only (aten/src/ATen/native/cuda/GroupedBlas.cpp, `use_fast_path`
    through `_scaled_mm_allowed_device(sm90_only, sm100_only)`: major 9 or 10);
    elsewhere its fallback copies the groups' offsets to the host, and so does transformers' own loop, which it
    compiles for experts not in bf16."""
    dtypes = {weight.dtype for weight in expert_weights(module).values()}
    if not dtypes:
        return None
    if dtypes == {torch.bfloat16}:
        major, minor = torch.cuda.get_device_capability()
        if major in (9, 10):
            return None
        why = f"bf16 on compute capability {major}.{minor}: CUDA's grouped kernel needs 9.x or 10.x"
    else:
        why = f"{', '.join(sorted(str(d).removeprefix('torch.') for d in dtypes))}, not bf16"
    return f"its MoE experts' grouped matmuls ({why}) copy their groups' offsets to the host each call"


def count_transformers_fallback():
    """FLOPs for transformers' own grouped matmul (its custom op, a loop of mm over the experts), which its
    MoE blocks run compiled where the experts are not bf16: registered once transformers has defined it."""
    import transformers.integrations.moe  # noqa: F401 - defines the ops

    forward, backward = torch.ops.transformers.grouped_mm_fallback, torch.ops.transformers.grouped_mm_fallback_backward
    if forward not in flop_registry:
        register_flop_formula(forward)(lambda a_shape, b_shape, *args, **kwargs: grouped_mm_flop(a_shape, b_shape))
        # the input's gradient and the weight's, each as many FLOPs as the forward
        register_flop_formula(backward)(lambda a_shape, b_shape, *args, **kwargs: 2 * grouped_mm_flop(a_shape, b_shape))


@register_flop_formula(GROUPED_MM)
def grouped_mm_flop(a_shape, b_shape, *args, out_shape=None, **kwargs):
    """2 FLOPs per multiply-add: every row of A meets the N columns of its group's B. A (rows, K)
    against B (groups, K, N), or A (M, K) and B (K, N) split along K, or a batched A (groups, M, K)
    against B (groups, K, N): 2 x A's elements x N; a batched A (groups, M, K) against B (K, N)
    split along N: 2 x M x K x N."""
    if len(a_shape) == 3 and len(b_shape) == 2:
        return 2 * a_shape[1] * a_shape[2] * b_shape[1]
    return 2 * math.prod(a_shape) * b_shape[-1]
