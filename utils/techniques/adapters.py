"""The adapters stage: LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language
Models") through PEFT, and under it QLoRA's 4-bit base (Dettmers et al. 2023, "QLoRA").
LoRA: every weight of the model frozen, a trainable low-rank pair B·A (rank r,
scaled by alpha / r, B starting at zero so the model starts as built) beside each targeted
projection. No gradient or optimizer state for a frozen weight: what a fine-tune of a large
model fits by. PEFT injects the adapters into the model in place (inject_adapter_in_model), so
the suite's model, a transformers model or a file's keeps its interface."""

import math

import torch

from utils import checks
from utils.models import moe
from utils.models.hf import quiet
from utils.techniques.run import Skip, technique

# LORA_TARGETS=auto: the LoRA paper's choice, the query and value projections (its section 7.1),
# by the names model families give them; a fused query-key-value projection is adapted whole
AUTO_TARGETS = (("q_proj", "v_proj"), ("c_attn",), ("query_key_value",), ("qkv_proj",), ("Wqkv",))
ADAPTER_PREFIX = "lora_"  # PEFT's LoRA parameters: lora_A, lora_B
# PEFT imports torchao and bitsandbytes where they are installed: their notices about optional
# native kernels (torchao 0.18's CUDA-only extensions on a CPU build of torch; its pytree
# registrations that torch 2.13 deprecates) are no news of this run's
IMPORT_NOISE = ("torchao", "torch.utils._pytree", "bitsandbytes")


def targets(given, names, model, projections=()):
    """The module-name suffixes to adapt: LORA_TARGETS's, each checked against the model's
    modules (`names`; `projections`: its weight matrices' modules, named when one is not found),
    or auto's first family present. Raises checks.BadInput or Skip."""
    if given == "auto":
        found = next((family for family in AUTO_TARGETS if all(_matches(t, names) for t in family)), None)
        if found is None:
            raise Skip(f"LORA_TARGETS=auto finds no query/value projection in {model} "
                       f"({', '.join('/'.join(f) for f in AUTO_TARGETS)}): name its modules in LORA_TARGETS")
        return found
    wanted = tuple(t.strip() for t in given.split(",") if t.strip())
    missing = [t for t in wanted if not _matches(t, names)]
    if missing or not wanted:
        known = sorted({name.rsplit(".", 1)[-1] for name in projections})
        raise checks.BadInput(f"LORA_TARGETS={given!r}: {model} has no module or MoE expert weight named "
                              f"{missing[0] if missing else ''!r}"
                              + (f" (its projections: {', '.join(known)})" if known else ""))
    return wanted


def _matches(target, names):
    return any(name == target or name.endswith("." + target) for name in names)


@technique
def lora_adapters(run):
    try:
        with quiet(*IMPORT_NOISE):
            from peft import LoraConfig, inject_adapter_in_model
    except ImportError as err:
        raise Skip(f"peft is not importable ({err}); pip install peft==0.21.2") from None
    cfg = run.cfg
    modules = dict(run.model.named_modules())
    projections = [name for name, m in modules.items() if isinstance(m, torch.nn.Linear)]
    # a MoE block's experts are 3-D weights, not modules: PEFT adapts each expert's slice (target_parameters)
    experts = list(moe.expert_weights(run.model))
    adapted = targets(cfg.lora_targets, list(modules) + experts, cfg.model, projections + experts)
    for param in run.model.parameters():
        param.requires_grad_(False)
    # a name may reach both (down_proj: a shared expert's nn.Linear and the routed experts' weight)
    config = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                        target_modules=[t for t in adapted if _matches(t, modules)],
                        target_parameters=[t for t in adapted if _matches(t, experts)] or None)
    inject_adapter_in_model(config, run.model)
    for name, param in run.model.named_parameters():
        param.requires_grad_(ADAPTER_PREFIX in name)
    run.adapter = (f"lora r={cfg.lora_rank} alpha={cfg.lora_alpha:g} dropout={cfg.lora_dropout:g} "
                   f"on {','.join(adapted)}")


# QLoRA's NormalFloat4: 64 weights share an absmax, and the absmaxes are themselves quantised to
# 8 bits in blocks of 256 ("double quantisation"); torchao's to_nf4 with these is what torchtune's
# QLoRA runs (torchtune/modules/low_precision/nf4_linear.py), chosen over bitsandbytes' Linear4bit
# because it is plain PyTorch: the planner runs it on fake tensors as it runs on the GPU
NF4_BLOCK, NF4_SCALER_BLOCK = 64, 256


@technique
def nf4_base(run):
    """Every frozen projection weight of the blocks stored in 4-bit NF4, dequantised to bf16 in
    each forward and backward (torchao's linear_nf4); the adapters beside them train as LoRA's."""
    if not run.adapter:
        raise ValueError("nf4_base quantises the frozen base under adapters: apply lora_adapters first")
    try:
        with quiet(*IMPORT_NOISE):
            from torchao.quantization import to_nf4
    except ImportError as err:
        raise Skip(f"torchao is not importable ({err}); pip install torchao==0.18.0") from None
    frozen = [m for m in run.model.blocks.modules() if isinstance(m, torch.nn.Linear) and not m.weight.requires_grad]
    quantisable = [m for m in frozen if m.weight.numel() % NF4_BLOCK == 0]
    if not quantisable:
        raise Skip(f"no frozen projection of {run.cfg.model}'s blocks holds a multiple of {NF4_BLOCK} weights, "
                   "NF4's block")
    smaller = 0
    for module in quantisable:
        # to_nf4 takes whole blocks of scalers: a projection with fewer than 256 x 64 weights (a tiny
        # model's) gets the largest block that divides its scalers
        scaler_block = math.gcd(module.weight.numel() // NF4_BLOCK, NF4_SCALER_BLOCK)
        smaller += scaler_block < NF4_SCALER_BLOCK
        weight = module.weight.detach().to(torch.bfloat16)  # NF4 dequantises to bf16
        module.weight = torch.nn.Parameter(to_nf4(weight, NF4_BLOCK, scaler_block), requires_grad=False)
    fewer = f" ({smaller} small ones per fewer: the largest block that divides theirs)" if smaller else ""
    run.adapter += (f"; NF4 base: {len(quantisable)} of {len(frozen)} frozen projections, block {NF4_BLOCK}, "
                    f"scalers per {NF4_SCALER_BLOCK}{fewer}")
    # a MoE block's experts are 3-D tensors its grouped matmuls read whole, not nn.Linear: they stay as they are
    unquantised = sum(p.numel() for m in run.model.blocks.modules() if not isinstance(m, torch.nn.Linear)
                      for p in m.parameters(recurse=False) if p.dim() > 1 and not p.requires_grad)
    if unquantised:
        run.adapter += (f"; {unquantised:,} frozen weights outside nn.Linear (a MoE block's experts, its router) "
                        "not in NF4")
