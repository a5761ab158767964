"""The adapters stage: LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language
Models") through PEFT, and under it QLoRA's 4-bit base (Dettmers et al. 2023, "QLoRA").
LoRA: every weight of the model frozen, a trainable low-rank pair B·A (rank r,
scaled by alpha / r, B starting at zero so the model starts as built) beside each targeted
projection. No gradient or optimizer state for a frozen weight: what a fine-tune of a large
model fits by. PEFT injects the adapters into the model in place (inject_adapter_in_model), so
the suite's model, a transformers model or a file's keeps its interface."""

import math

import torch
from torch.nn.utils import parametrize

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
        raise checks.BadInput(f"LORA_TARGETS={given!r}: {model} has no module LoRA adapts (a Linear, Embedding, "
                              "Conv or MultiheadAttention, as PEFT's LoRA layers take) or MoE expert weight named "
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
    from transformers.pytorch_utils import Conv1D  # GPT-2's projections: PEFT adapts them too

    cfg = run.cfg
    kinds = (torch.nn.Linear, torch.nn.Embedding, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d,
             torch.nn.MultiheadAttention, Conv1D)  # peft/tuners/lora/model.py _create_new_module: what it takes
    modules = {name: m for name, m in run.model.named_modules() if isinstance(m, kinds)}
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
DEQUANT_PARTS = 8  # a MoE expert stack is stored, and dequantised, in up to this many parts of whole experts
NF4_SHARDS = 8  # the FSDP2 ranks a small weight's scaler blocks split among (a GPU node's); a large one's: any


@technique
def nf4_base(run):
    """Every frozen projection weight of the blocks stored in 4-bit NF4, dequantised to bf16 in
    each forward and backward (torchao's linear_nf4), and a MoE block's expert stacks likewise; the
    adapters beside them train as LoRA's."""
    if not run.adapter:
        raise ValueError("nf4_base quantises the frozen base under adapters: apply lora_adapters first")
    try:
        with quiet(*IMPORT_NOISE):
            from torchao.quantization import NF4Tensor, to_nf4
    except ImportError as err:
        raise Skip(f"torchao is not importable ({err}); pip install torchao==0.18.0") from None
    quantisable, kept = _frozen_projections(run.model.blocks)
    experts, adapted = _expert_stacks(run.model.blocks)
    if not quantisable and not experts:
        raise Skip(f"no frozen projection of {run.cfg.model}'s blocks can be stored in NF4: {_listed(kept)}")
    world = run.cfg.world
    shards = world.size if world.kind == "fsdp" else 1  # FSDP2 splits each NF4 weight's blocks among its ranks
    smaller = 0
    for module in quantisable:
        weight, smaller_block = _nf4(to_nf4, module.weight, shards)
        smaller += smaller_block
        module.weight = torch.nn.Parameter(weight, requires_grad=False)
    for name in experts:
        smaller += _nf4_experts(to_nf4, run.model.blocks, name, shards)
    _one_class_each(run.model.blocks, adapted)
    fewer = f" ({smaller} small ones per fewer: the largest block that divides theirs)" if smaller else ""
    run.adapter += (f"; NF4 base: {len(quantisable)} of {len(quantisable) + sum(map(len, kept.values()))} frozen "
                    "projections" + (f" and {len(experts)} MoE expert stacks" if experts else "")
                    + f", block {NF4_BLOCK}, scalers per {NF4_SCALER_BLOCK}{fewer}")
    run.adapter += f"; kept in bf16: {_listed(kept)}" if kept else ""
    # what else stays: weights outside nn.Linear and the expert stacks (a MoE router's), small
    held = [m.weight for modules in kept.values() for m in modules] + list(adapted.values())
    others = sum(p.numel() for p in run.model.blocks.parameters() if p.dim() > 1 and not p.requires_grad
                 and not isinstance(p, NF4Tensor)) - sum(w.numel() for w in held)
    if others:
        run.adapter += f"; {others:,} other frozen weights of the blocks not in NF4 (a MoE router's)"
    if adapted:
        run.adapter += (f"; {len(adapted)} MoE expert stacks under LoRA kept in bf16 (PEFT's expert adapter "
                        "cannot stack on NF4's parametrization: ParamWrapper._remove_parametrizations, peft 0.21)")


def _frozen_projections(blocks):
    """The frozen nn.Linear projections of `blocks` NF4 can store, and the others by why not ({why: modules}).
    torchao's NF4Tensor runs a projection through F.linear (its linear_nf4), which nn.Linear's forward calls; a
    subclass that multiplies its weight itself (Falcon's FalconLinear: input @ weight.T) asks it for an op it has
    not (aten.permute)."""
    quantisable, kept = [], {}
    for module in blocks.modules():
        if not isinstance(module, torch.nn.Linear) or module.weight.requires_grad:
            continue
        if type(module).forward is not torch.nn.Linear.forward:
            why = f"of {type(module).__name__}, whose own forward multiplies the weight (NF4 runs through F.linear)"
        elif module.weight.numel() % NF4_BLOCK:
            why = f"holding no multiple of {NF4_BLOCK} weights (NF4's block)"
        else:
            quantisable.append(module)
            continue
        kept.setdefault(why, []).append(module)
    return quantisable, kept


def _listed(kept):
    return "; ".join(f"{len(modules)} projections {why}" for why, modules in kept.items())


def _expert_stacks(blocks):
    """The frozen MoE expert stacks to store in NF4, and those LoRA adapts ({name: weight} each). PEFT's
    adapter on a stack (ParamWrapper) parametrizes it in each forward and, when the stack is parametrized
    already, cannot remove its own (it looks for its other proxy class, peft/tuners/lora/layer.py): its adapters
    would pile up a step at a time, so an adapted stack stays as it is."""
    wrapped = {(id(m.get_base_layer()), m.parameter_name) for m in blocks.modules() if hasattr(m, "parameter_name")}
    stacks, adapted = {}, {}
    for name, weight in moe.expert_weights(blocks).items():
        owner, attribute = _owner(blocks, name)
        if not weight.requires_grad and not parametrize.is_parametrized(owner, attribute):
            (adapted if (id(owner), attribute) in wrapped else stacks)[name] = weight
    return stacks, adapted


def _owner(blocks, name):
    """(the module holding the expert stack `name`, the stack's attribute name)."""
    owner, _, attribute = name.rpartition(".")
    return blocks.get_submodule(owner), attribute


def _nf4(to_nf4, weight, shards):
    """`weight` (2-D) in NF4 by torchao's `to_nf4`, and whether its scalers took a smaller block than 256.
    to_nf4 takes whole blocks of scalers, and FSDP2's ranks each take whole blocks of them (torchao's NF4 split
    asserts it, nf4_tensor.py): a projection with fewer than 256 x 64 x NF4_SHARDS weights (a tiny model's) gets
    the largest block that leaves NF4_SHARDS of them, on one process too, so that it rounds as a sharded run does
    (make fsdp's loss check compares the two). Raises Skip where `shards` cannot split them."""
    blocks = weight.numel() // NF4_BLOCK
    scaler_block = math.gcd(blocks // NF4_SHARDS if blocks % NF4_SHARDS == 0 else blocks, NF4_SCALER_BLOCK)
    if blocks // scaler_block % shards:
        raise Skip(f"a {'x'.join(map(str, weight.shape))} weight's {blocks // scaler_block} blocks of NF4 scalers "
                   f"do not split among {shards} FSDP2 ranks (torchao's NF4 split takes whole blocks)")
    return to_nf4(weight.detach().to(torch.bfloat16), NF4_BLOCK, scaler_block), scaler_block < NF4_SCALER_BLOCK


class Dequantised(torch.nn.Module):
    """The parametrization that stores a MoE expert stack (3-D: one matrix per expert) in NF4, as DEQUANT_PARTS
    2-D tensors of whole experts (torchao's NF4Tensor takes 2-D ones), and reads it as the bf16 stack the experts'
    grouped matmuls take, a part at a time: torchao's dequantisation holds ~10 bytes per weight of temporaries
    (its 4-bit codes widened to int64), which over a whole stack (Mixtral's: 0.94B weights) would outweigh the
    stack itself, while an op per expert (Qwen3 30B-A3B's 128) is slow to run and to plan."""

    def __init__(self, to_nf4, shards):
        super().__init__()
        self.to_nf4, self.shards, self.smaller = to_nf4, shards, False
        self.reads_as = None  # the stack as the grouped matmuls read it, on the meta device: its shape and dtype

    def right_inverse(self, stack):
        per_part = math.ceil(len(stack) / DEQUANT_PARTS)
        # each part copied out of the stack: an NF4Tensor keeps its source's storage offset, which FSDP2's views of
        # it (as_strided) must then match
        parts, smaller = zip(*(_nf4(self.to_nf4, stack[i:i + per_part].flatten(0, 1).clone(), self.shards)
                               for i in range(0, len(stack), per_part)))
        self.smaller = any(smaller)
        self.reads_as = torch.empty(stack.shape, dtype=torch.bfloat16, device="meta")
        return list(parts)

    def forward(self, *parts):
        stack = torch.empty(self.reads_as.shape, dtype=self.reads_as.dtype, device=parts[0].device)
        first, matrix = 0, self.reads_as.shape[1:]
        for part in parts:
            experts = part.shape[0] // matrix[0]
            stack[first:first + experts].copy_(part.get_original_weight().view(experts, *matrix))
            first += experts
        return stack


def _one_class_each(blocks, adapted):
    """parametrize gives each module it parametrizes a class of its own (Parametrized<its class>, made per module:
    torch/nn/utils/parametrize.py, _inject_new_class), and torch.compile guards a block on its modules' types: by
    blocks, each block's experts would recompile, and past dynamo's recompile_limit (8) run eager. The experts
    modules of one class with the same stacks in NF4 share the first one's (its properties read each module's own
    parametrizations); not one with a stack under LoRA, on which PEFT parametrizes in each forward, class-wide."""
    under_lora = {id(_owner(blocks, name)[0]) for name in adapted}
    shared = {}
    for module in blocks.modules():
        if parametrize.is_parametrized(module) and id(module) not in under_lora:
            kind = (type(module).__bases__[0], tuple(module.parametrizations))
            module.__class__ = shared.setdefault(kind, type(module))


def _nf4_experts(to_nf4, blocks, name, shards):
    """A MoE block's expert stack `name` stored in NF4 (Dequantised), dequantised whole in each forward (and in
    backward's recompute), as the experts' grouped matmul reads the stack, which holds it for backward as it does
    the layer's other activations (every layer's, or with checkpointing one at a time). Returns whether its
    experts' scalers took a smaller block."""
    # unsafe: what is stored (2-D NF4 tensors) is not what the parametrization returns
    parametrization = Dequantised(to_nf4, shards)
    parametrize.register_parametrization(*_owner(blocks, name), parametrization, unsafe=True)
    return parametrization.smaller
