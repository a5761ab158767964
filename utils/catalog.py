"""The techniques, declared as data: one row each, read by combinations, help, the reference
docs, the planner and (to come) the tuner. Stdlib only, so `make <name>` refuses a bad name
before any process imports torch.

A row says what the technique is: its calls (the baseline's and its own, in its script's
order: `diff scripts/baseline.py scripts/<name>.py` is the row's own calls), the named
combination it equals, where it can run, and what it changes besides speed. Each script is
held to its row by a test (tests read the scripts' `setup` bodies; nothing here parses source).
Which stage a function belongs to, and which of its group a run holds one of, is FUNCTIONS.
"""

from dataclasses import dataclass

BASELINE = "baseline"  # what every speedup is against
AA_CHECK = "adamw"  # the baseline's calls under another name: an A/A test of the machine's noise
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")  # torch.compile's
GRAPHED_COMPILE_MODES = ("reduce-overhead", "max-autotune")  # inductor captures CUDA graphs in these modes
# what compile_model hands torch.compile: the whole model; each block, its checkpoint (if any) inside its graph
# (torchtitan's apply_compile of checkpointed blocks); or each block inside its checkpoint, which reruns the
# compiled forward in backward (torchtune's recipes: compile_model, then set_activation_checkpointing)
COMPILE_SCOPES = ("model", "blocks", "blocks_in_checkpoint")
BLOCK_SCOPES = COMPILE_SCOPES[1:]


def compiled_by(scope):
    """How a compile scope reads in a label: "" for the whole model (torch.compile's default), else e.g.
    "by blocks in checkpoint"."""
    return f"by {scope.replace('_', ' ')}" if scope in BLOCK_SCOPES else ""


# a part of the step: its results column and what a chart calls it (make compare, the box and bootstrap plots)
STEP_PARTS = {"step": ("step_ms", "step time"), "forward": ("forward_ms", "forward time"),
              "backward": ("backward_ms", "backward time"), "optimizer": ("optimizer_ms", "optimizer step time")}
CHUNK_LOGITS = ("recompute", "keep")  # how chunked cross-entropy's backward has each chunk's logits
STAGES = ("architecture", "precision", "attention", "adapters", "memory", "parallel", "optimizer", "compile", "step")
# technique function -> (stage, the group of which a run holds one: two of a group conflict)
FUNCTIONS = {
    "gated_mlp": ("architecture", "MLP"),
    "strict_fp32": ("precision", None),
    "tf32": ("precision", None),
    "autocast_bf16": ("precision", "precision"),
    "autocast_fp16": ("precision", "precision"),
    "bf16_weights": ("precision", None),
    "flash_attention": ("attention", None),
    "lora_adapters": ("adapters", None),
    "nf4_base": ("adapters", None),
    "checkpoint_blocks": ("memory", "checkpointing"),
    "chunked_cross_entropy": ("memory", None),
    "offload_activations": ("memory", None),
    **dict.fromkeys(("adamw", "adam", "sgd", "fused_adamw", "adamw_8bit", "paged_adamw_8bit", "torchao_adamw_8bit",
                     "lion", "lion_8bit", "offload_adamw"), ("optimizer", "optimizer")),
    "step_in_backward": ("optimizer", None),
    "compile_model": ("compile", None),
    "accumulate": ("step", None),
    "cuda_graphs": ("step", None),
}
# functions that cannot run under PARALLEL kinds (ddp, fsdp): (the kinds, why); refused before anything starts
BNB_ON_DTENSORS = ("bitsandbytes' optimizer step takes plain tensors (its kernels have no sharding rule), and "
                   "FSDP2's parameters are DTensors; torchao_8bit steps them")
NOT_PARALLEL = {
    "step_in_backward": (("ddp", "fsdp"), "step_in_backward steps each parameter as backward reaches it, and under "
                         "DDP / FSDP2 its gradient is not yet reduced across ranks then"),
    "cuda_graphs": (("ddp", "fsdp"), "cuda_graphs captures one process's step, and under DDP / FSDP2 the "
                    "collectives would need capturing too"),
    **dict.fromkeys(("adamw_8bit", "paged_adamw_8bit", "lion", "lion_8bit"), (("fsdp",), BNB_ON_DTENSORS)),
}
# functions that cannot clip gradients (GRAD_CLIP): why; refused before anything starts
NOT_CLIPPED = {
    "step_in_backward": "each parameter steps as its gradient is ready, before the global norm exists (torchtune's "
    "recipes refuse clip_grad_norm with optimizer_in_bwd too)",
    "offload_adamw": "torchao's CPUOffloadOptimizer copies each gradient to the host as backward makes it (its "
    "post-accumulate-grad hook) and steps from those copies, which clipping afterwards never scales",
}
HOST_STEPPED = "cuda_graphs captures the whole step as GPU work, and this optimizer steps from the host"
# pairs of functions that refuse each other, and why
CONFLICTS = {
    frozenset(("cuda_graphs", "compile_model")): "cuda_graphs captures the eager step; for compiled graphs use "
    "compile with COMPILE_MODE=reduce-overhead",
    frozenset(("cuda_graphs", "autocast_fp16")): "cuda_graphs cannot capture fp16's GradScaler, whose inf check "
    "reads the GPU from the host every step; use bf16",
    # bitsandbytes synchronises after every parameter; torchao's offload steps on the CPU
    **{frozenset(("cuda_graphs", f)): f"{HOST_STEPPED} ({f})"
       for f in ("adamw_8bit", "paged_adamw_8bit", "lion", "lion_8bit", "offload_adamw")},
    frozenset(("cuda_graphs", "torchao_adamw_8bit")): "torchao's AdamW8bit calls a compiled function per "
    "parameter from the host: for compiled graphs use compile with COMPILE_MODE=reduce-overhead",
    frozenset(("bf16_weights", "autocast_fp16")): "bf16 weights compute in bf16; fp16's loss scaling is for "
    "fp16 autocast over fp32 weights",
    frozenset(("cuda_graphs", "offload_activations")): "offloaded activations are copied to host memory and back, "
    "which a CUDA graph's private pool does not follow",
    # each parameter steps as its gradient is ready (torchtune refuses the same three)
    frozenset(("step_in_backward", "accumulate")): "the optimizer steps in backward, once per backward: "
    "accumulating gradients over micro-batches needs the step after the last",
    frozenset(("step_in_backward", "autocast_fp16")): "fp16's GradScaler unscales every gradient before one "
    "optimizer step; stepped in backward, each parameter's would go unchecked",
    frozenset(("step_in_backward", "cuda_graphs")): "cuda_graphs captures one optimizer step after backward",
    frozenset(("step_in_backward", "offload_adamw")): "torchao's offload steps all parameters on the CPU after "
    "backward",
}


@dataclass(frozen=True)
class Call:
    function: str
    args: tuple = ()
    kwargs: tuple = ()  # (name, value) pairs

    @property
    def stage(self):
        return FUNCTIONS[self.function][0]

    def __str__(self):
        given = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs]
        return f"{self.function}({', '.join(['run', *given])})"


def call(function, *args, **kwargs):
    return Call(function, args, tuple(kwargs.items()))


SAME_MATH = "same math up to rounding"


@dataclass(frozen=True)
class Technique:
    name: str
    calls: tuple  # Calls, in its script's order
    learns: str = SAME_MATH  # what it changes besides speed and memory
    cuda_only: bool = False  # nothing to measure on a CPU
    min_capability: tuple = None  # the CUDA compute capability it needs
    packages: tuple = ()  # packages it needs beyond torch (skipped, with the reason, without them)
    equals: tuple = ()  # the combination a named combination script spells
    tune: str = "searched"  # its place in make tune's space: TUNE_ROLES says what each means


# make tune's space (utils/tune/space.py): what each technique is to the tuner
SEARCHED, SAVES_MEMORY, OPT_IN, NOT_A_CHOICE = "searched", "saves memory", "opt-in", "not a choice"
TUNE_ROLES = {
    SEARCHED: "always searched: the same learning up to rounding",
    SAVES_MEMORY: "searched only where the step does not fit without it: it recomputes or moves data, so it can "
                  "only cost time where memory is not short",
    OPT_IN: "searched only when TECHNIQUES names it: it changes what is learnt",
    NOT_A_CHOICE: "the baseline, its calls under another name, a named combination of searched ones, or "
                  "accumulation (the tuner splits the global batch itself)",
}
FP32, ADAMW = call("strict_fp32"), call("adamw")
LION_ADVICE = {"lr_scale": 1 / 3, "weight_decay_scale": 3}  # the Lion paper's: LR / 3, weight decay x 3
BF16 = (8, 0)  # native bf16 and TF32 tensor cores: Ampere
OTHER_OPTIMIZER = "another optimizer: what is learnt, and how fast, changes"
T = Technique
TECHNIQUES = (
    T("baseline", (FP32, ADAMW), tune=NOT_A_CHOICE),
    T("8bit", (FP32, call("adamw_8bit")), "AdamW with 8-bit block-quantised state: close to AdamW, not equal",
      packages=("bitsandbytes",), tune=OPT_IN),
    T("accum", (FP32, ADAMW, call("accumulate")), "the same mean gradient over ACCUM x BATCH sequences per step",
      tune=NOT_A_CHOICE),
    T("adam", (FP32, call("adam", default_lr=1e-3)), "Adam without decoupled weight decay, LR 1e-3", tune=OPT_IN),
    T("adamw", (FP32, ADAMW), tune=NOT_A_CHOICE),
    T("bf16", (FP32, call("autocast_bf16"), ADAMW), "matmuls and activations in bf16 (8 mantissa bits)",
      min_capability=BF16),
    T("checkpointing", (FP32, call("checkpoint_blocks"), ADAMW), tune=SAVES_MEMORY),
    T("chunked_ce", (FP32, call("chunked_cross_entropy"), ADAMW), tune=SAVES_MEMORY),
    T("compile", (FP32, ADAMW, call("compile_model"))),
    T("cudagraphs", (FP32, ADAMW, call("cuda_graphs")), cuda_only=True),
    T("flash", (FP32, call("autocast_bf16"), call("flash_attention"), ADAMW),
      "bf16 autocast (its prerequisite on CUDA); attention's own result to rounding", min_capability=BF16),
    T("fp16", (FP32, call("autocast_fp16"), ADAMW), "fp16 with a loss scale: a step with inf/nan gradients is skipped"),
    T("fused", (FP32, call("fused_adamw"))),
    T("geglu", (call("gated_mlp", "geglu"), FP32, ADAMW), "another architecture: a GeGLU MLP", tune=OPT_IN),
    T("lion", (FP32, call("lion", **LION_ADVICE)), OTHER_OPTIMIZER, packages=("bitsandbytes or lion-pytorch",),
      tune=OPT_IN),
    T("lion8bit", (FP32, call("lion_8bit", **LION_ADVICE)), OTHER_OPTIMIZER + ", its state in 8 bits",
      packages=("bitsandbytes",), tune=OPT_IN),
    T("lora", (FP32, call("lora_adapters"), ADAMW), "only low-rank adapters train (LORA_RANK, LORA_TARGETS); the "
      "base weights stay as built", packages=("peft",), tune=OPT_IN),
    T("momentum", (FP32, call("sgd", momentum=0.9, default_lr=0.01)), OTHER_OPTIMIZER, tune=OPT_IN),
    T("offload", (FP32, call("offload_adamw")), cuda_only=True, packages=("torchao",), tune=SAVES_MEMORY),
    T("offload_activations", (FP32, call("offload_activations"), ADAMW), tune=SAVES_MEMORY),
    T("torchao_8bit", (FP32, call("torchao_adamw_8bit")), "AdamW with 8-bit block-quantised state: close to AdamW, "
      "not equal", packages=("torchao",), tune=OPT_IN),
    T("paged_8bit", (FP32, call("paged_adamw_8bit")), "AdamW with 8-bit block-quantised state: close to AdamW, "
      "not equal", packages=("bitsandbytes",), tune=OPT_IN),
    T("pure_bf16", (FP32, call("bf16_weights"), ADAMW), "weights, gradients and AdamW's state in bf16, no fp32 "
      "master copy: small updates round away", min_capability=BF16, tune=OPT_IN),
    T("qlora", (FP32, call("bf16_weights"), call("lora_adapters"), call("nf4_base"), ADAMW), "as lora, over a "
      "base rounded to 4-bit NF4 in bf16 weights", min_capability=BF16, packages=("peft", "torchao"), tune=OPT_IN),
    T("selective_checkpointing", (FP32, call("checkpoint_blocks", policy="selective"), ADAMW), tune=SAVES_MEMORY),
    T("sgd", (FP32, call("sgd", default_lr=0.1)), OTHER_OPTIMIZER, tune=OPT_IN),
    T("stack", (FP32, call("autocast_bf16"), call("flash_attention"), call("fused_adamw"), call("compile_model")),
      "as bf16 and flash", min_capability=BF16, equals=("flash", "fused", "compile"), tune=NOT_A_CHOICE),
    T("stack_memory", (FP32, call("autocast_bf16"), call("flash_attention"), call("checkpoint_blocks"),
                       call("lion_8bit", **LION_ADVICE)), "as bf16, flash and lion8bit", min_capability=BF16,
      packages=("bitsandbytes",), equals=("flash", "checkpointing", "lion8bit"), tune=NOT_A_CHOICE),
    T("step_in_backward", (FP32, ADAMW, call("step_in_backward")), tune=SAVES_MEMORY),
    T("swiglu", (call("gated_mlp", "swiglu"), FP32, ADAMW), "another architecture: a SwiGLU MLP", tune=OPT_IN),
    T("tf32", (call("tf32"), ADAMW), "fp32 matmuls in TF32 (10 mantissa bits)", cuda_only=True,
      min_capability=BF16),
)
BY_NAME = {t.name: t for t in TECHNIQUES}


def runs_on(technique):
    """Where a technique can run, in words (help and the reference docs)."""
    where = "CUDA" if technique.cuda_only else "CPU or CUDA"
    if technique.min_capability:
        where += f" (on CUDA: compute capability {'.'.join(map(str, technique.min_capability))}+)"
    return where + "".join(f"; needs {p}" for p in technique.packages)
