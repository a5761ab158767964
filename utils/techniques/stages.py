"""The technique functions of every stage but the optimizer's (utils/techniques/optimizers.py),
in stage order; utils/techniques/__init__.py says why the order is what it is."""

import importlib.util
import os
import sys
import warnings

import torch
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

from utils import catalog, checks, models
from utils.techniques import offload, selective, step
from utils.techniques.run import Skip, on_cuda, technique

# 1. architecture


@technique
def gated_mlp(run, kind):
    """Rebuild the model with a gated MLP (swiglu / geglu) at the GELU MLP's parameter count."""
    try:
        run.model = run.train_model = run.build(mlp=kind)
    except ValueError as err:  # a model without an MLP (the LSTM)
        raise Skip(str(err)) from None
    run.mlp = kind


# 2. precision


# environment variables that overrule torch's TF32 settings: torch's own (aten/src/ATen/Context.cpp,
# allowTF32CuBLAS: TF32 for every cuBLAS fp32 matmul) and NVIDIA's (cuBLAS and cuDNN docs: "0" turns TF32 off)
TF32_FORCED_ON = "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE"
TF32_FORCED_OFF = "NVIDIA_TF32_OVERRIDE"
# torch >= 2.9 sets TF32 per backend by fp32_precision ("ieee" or "tf32"); reading the legacy
# allow_tf32 flags after using it raises, so one API is used for both, chosen once
NEW_TF32_API = hasattr(torch.backends.cuda.matmul, "fp32_precision")


def tf32_state():
    """TF32 as torch now holds it, read back: {setting: on} for cuBLAS matmuls and cuDNN."""
    if NEW_TF32_API:
        return {
            "cuda.matmul": torch.backends.cuda.matmul.fp32_precision == "tf32",
            "cudnn.conv": torch.backends.cudnn.conv.fp32_precision == "tf32",
            "cudnn.rnn": torch.backends.cudnn.rnn.fp32_precision == "tf32",
        }
    return {"cuda.matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32}


def set_tf32(on):
    """Turn TF32 on or off for cuBLAS and cuDNN (cuDNN's convolutions and RNNs default to TF32)
    and check that torch holds it."""
    if NEW_TF32_API:
        precision = "tf32" if on else "ieee"
        torch.backends.cuda.matmul.fp32_precision = precision
        torch.backends.cudnn.conv.fp32_precision = precision
        torch.backends.cudnn.rnn.fp32_precision = precision
    else:
        torch.backends.cuda.matmul.allow_tf32 = on
        torch.backends.cudnn.allow_tf32 = on
    held = tf32_state()
    if any(value != on for value in held.values()):
        raise RuntimeError(f"TF32 set {'on' if on else 'off'} but torch reads back {held}")


@technique
def strict_fp32(run):
    # fp32 means fp32: pytorch may otherwise run fp32 matmuls on TF32 tensor cores
    set_tf32(False)
    forced = os.environ.get(TF32_FORCED_ON, "") not in ("", "0")
    if on_cuda(run) and forced:
        raise checks.BadInput(f"{TF32_FORCED_ON}={os.environ[TF32_FORCED_ON]} makes cuBLAS run every fp32 matmul "
                              "in TF32 whatever torch is told, so no run here is fp32: unset it")
    run.dtype = "fp32"


@technique
def tf32(run):
    if not on_cuda(run):
        raise Skip(
            "TF32 is a CUDA tensor-core mode (Ampere and newer); a CPU runs fp32 matmuls as fp32, "
            "so there is nothing to measure"
        )
    major, minor = torch.cuda.get_device_capability()
    if major < 8:
        raise Skip(f"TF32 needs compute capability 8.0 (Ampere) or newer; this GPU is {major}.{minor}")
    if os.environ.get(TF32_FORCED_OFF) == "0":
        raise checks.BadInput(f"{TF32_FORCED_OFF}=0 turns TF32 off in cuBLAS and cuDNN whatever torch is told, "
                              "so tf32 would run fp32: unset it")
    set_tf32(True)
    run.dtype = "tf32"


def _cpu_bf16_recurrence(model):
    """None, or why this CPU cannot run `model`'s recurrent layers under bf16 autocast: autocast sends an
    nn.LSTM to oneDNN's bf16 kernel, which some CPUs lack (an AVX2-only one: 'could not create a primitive
    descriptor'); a tiny layer of each kind is tried."""
    for kind in {type(m) for m in model.modules() if isinstance(m, torch.nn.RNNBase)}:
        try:
            with torch.autocast("cpu", torch.bfloat16):
                kind(8, 8, batch_first=True)(torch.zeros(1, 2, 8))
        except RuntimeError as err:
            return f"this CPU cannot run an {kind.__name__} under bf16 autocast ({' '.join(str(err).split())[:120]})"
    return None


@technique
def autocast_bf16(run):
    if on_cuda(run) and not torch.cuda.is_bf16_supported(including_emulation=False):
        raise Skip("this GPU has no native bfloat16 (it needs compute capability 8.0 or newer)")
    why = None if on_cuda(run) else _cpu_bf16_recurrence(run.model)
    if why:
        raise Skip(why)
    # weights, grads and optimizer state stay fp32; matmuls and activations run in bf16
    run.autocast_dtype = torch.bfloat16
    if run.dtype != BF16_WEIGHTS:  # over bf16 weights autocast changes nothing they do not
        run.dtype = BF16_AUTOCAST


BF16_AUTOCAST, BF16_WEIGHTS = "bf16-autocast", "bf16-weights"


@technique
def bf16_weights(run):
    """Weights in bf16, and so their gradients and the optimizer's state (built on them later):
    no fp32 master copy (torchtune's default, Lightning's "bf16-true"). Half the memory of every
    per-parameter tensor; an update below a weight's bf16 spacing (8 mantissa bits) is lost."""
    if on_cuda(run) and not torch.cuda.is_bf16_supported(including_emulation=False):
        raise Skip("this GPU has no native bfloat16 (it needs compute capability 8.0 or newer)")
    # the parameters only, as module.to casts them: buffers stay as built (RoPE's inv_freq in fp32, as transformers'
    # bf16 models and torchtune's keep it: in bf16 a position's angle drifts by radians past a few thousand tokens)
    for param in run.model.parameters():
        param.data = param.data.to(torch.bfloat16)
    run.dtype = BF16_WEIGHTS


@technique
def autocast_fp16(run):
    # fp16's range is narrow (max 65504): small gradients underflow to zero unless the loss
    # is scaled up first. GradScaler does that and skips a step whose grads hold inf/nan.
    run.autocast_dtype = torch.float16
    run.scaler = torch.amp.GradScaler(run.cfg.device)
    run.dtype = "fp16-autocast"


# 3. attention


def flash_attn_package():
    """(usable, why not): the flash-attn package imports, or the reason it cannot. A package
    built against another torch or CUDA is found by find_spec yet fails at import (undefined
    symbol), which would fail the first forward."""
    if importlib.util.find_spec("flash_attn") is None:
        return False, "flash-attn is not installed"
    try:
        from flash_attn import flash_attn_func  # noqa: F401 - the import is the check
    except Exception as err:  # noqa: BLE001 - an ABI mismatch raises ImportError, OSError or RuntimeError
        return False, f"flash-attn is installed but does not import ({type(err).__name__}: {str(err)[:120]})"
    return True, ""


@technique
def flash_attention(run):
    if on_cuda(run) and run.autocast_dtype not in (torch.bfloat16, torch.float16):
        raise ValueError("flash attention kernels need fp16/bf16 on CUDA: apply an autocast before flash_attention")
    # the flash-attn package when it can run (CUDA), else pytorch's SDPA, which dispatches
    # to its own flash kernel where the shapes and dtype allow; the kernel that ran is probed
    use_package = False
    if on_cuda(run):
        use_package, why_not = flash_attn_package()
        if not use_package and "not installed" not in why_not:
            print(f"{run.cfg.technique}: {why_not}: PyTorch SDPA instead", file=sys.stderr, flush=True)
    try:
        run.model.set_attention("flash_attn" if use_package else "sdpa")
    except ValueError as err:
        raise Skip(str(err)) from None


# 5. memory


@technique
def checkpoint_blocks(run, policy="block"):
    blocks = run.model.blocks
    if not len(blocks):
        raise Skip(f"{run.cfg.model} shows no blocks to checkpoint (no nn.ModuleList): name them with BLOCKS=")
    # "block": keep only each block's input and recompute its activations in backward;
    # "selective": keep attention's and every other matmul's output too (utils/techniques/selective.py).
    # torchtitan's wrapper: the model's forward does not know. A foreign model's blocks are its
    # own ModuleList, so the wrapped blocks are the ones its forward calls
    options = {"block": {}, "selective": {"context_fn": selective.contexts}}[policy]
    for i, block in enumerate(blocks):
        blocks[i] = checkpoint_wrapper(block, **options)
    run.checkpointing = policy


@technique
def chunked_cross_entropy(run, chunks=8):
    # the output projection and the loss in chunks of tokens, each chunk's logits recomputed in
    # backward (the whole logits never exist) or kept, as torchtune's (utils/models/loss.py);
    # torchtune's recipes use 8
    why = run.model.chunks_unsupported()
    if why:
        raise Skip(why)
    run.model.loss_chunks, run.model.chunk_logits = chunks, run.cfg.chunk_logits


@technique
def offload_activations(run):
    # what autograd saves for backward, but weights, is copied to host memory as forward makes it
    # and back as backward needs it (save_on_cpu's hooks, pinned on CUDA: copies the GPU does not
    # wait on the host for; utils/techniques/offload.py); on a CPU it runs, and moves nothing anywhere
    pin = on_cuda(run)
    run.saved_tensors = lambda: offload.on_host(run.model, pin)
    run.activation_offload = True


# 8. compile


@technique
def compile_model(run):
    # the first steps trace and compile; they fall in the warm-up, which is timed apart
    mode, scope = run.cfg.compile_mode, run.cfg.compile_scope
    options = {"mode": None if mode == "default" else mode}
    why = on_cuda(run) and mode in catalog.GRAPHED_COMPILE_MODES and run.model.host_synced()
    if why:
        raise Skip(f"COMPILE_MODE={mode}'s CUDA graphs cannot capture {run.cfg.model}'s step: {why}")
    if scope in catalog.BLOCK_SCOPES:
        # each block its own graph (torchtitan's apply_compile, torchtune's compile_model): identical blocks
        # share one compiled graph, and backward finishes each block's graph before the next, so a block's
        # gradients reach their hooks (step_in_backward) as it ends; the rest runs eager. Wrapped, not
        # compiled in place: module hooks (MemTracker's, the planner's) then run outside the graph
        blocks = run.model.blocks
        if not len(blocks):
            raise Skip(f"{run.cfg.model} shows no blocks to compile (no nn.ModuleList): name them with BLOCKS=")
        if not run.checkpointing:
            scope = "blocks"  # no checkpoint to be inside of: the same graphs
        for i, block in enumerate(blocks):
            if scope == "blocks_in_checkpoint":  # the checkpoint outside, rerunning the compiled forward
                block._checkpoint_wrapped_module = torch.compile(block._checkpoint_wrapped_module, **options)
            else:  # a checkpoint inside: its recompute is traced into the backward graph
                blocks[i] = torch.compile(block, **options)
        if run.model.loss_chunks > 1:  # and each chunk's upcast and cross-entropy, as torchtune's compile_loss
            # (a whole loss stays eager, as torchtitan's of its 2024 benchmarks)
            run.model.chunk_score = torch.compile(run.model.chunk_score, **options)
    else:
        run.train_model = torch.compile(run.train_model, **options)
    if run.cfg.world.kind == "fsdp" and models.arch(run.cfg.model) != "file":
        # a compiled region hands its output back as a view of its buffer (aot autograd's alias of an intermediate),
        # which FSDP2 warns of, as an in-place op on it would skip its pre-backward hook (pytorch/pytorch#181850):
        # the suite's blocks and transformers' add their residuals out of place; a file's model keeps the warning
        warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module \(\w+\) returned a view tensor")
    run.compile_mode, run.compile_scope = mode, scope


# 9. step


@technique
def accumulate(run):
    # ACCUM micro-batches of BATCH per optimizer step, each loss divided by ACCUM, so the
    # gradient is the mean over all ACCUM x BATCH sequences, as one big batch would give
    run.accum = run.cfg.accum


@technique
def cuda_graphs(run):
    if not on_cuda(run):
        raise Skip("CUDA graphs capture GPU kernel launches; a CPU has no graph to replay")
    if run.compile_mode:
        raise ValueError("cuda_graphs captures the eager step; for compiled graphs use COMPILE_MODE=reduce-overhead")
    why = step.uncapturable(run)
    if why:  # a combination's parts are refused by name first (utils/registry.py CONFLICTS); a step built by hand here
        raise checks.BadInput(why)
    why = run.model.host_synced()
    if why:
        raise Skip(f"cuda_graphs cannot capture {run.cfg.model}'s step: {why}")
    run.step = step.CudaGraphStep()
