"""torchtune's ladder of optimisations, for `make plan_check`: Llama 3.2 3B fully fine-tuned on one
A100 (80 GB: the first row's 60 GiB fits no other), batch 2, sequence 4096, bf16, each row adding one
technique to the one above, LoRA and QLoRA beside them (pytorch/torchtune README, "Optimization
flags", added by its pull request #2003 of 2024-11-18).

What they ran (the recipes' configs of that commit, llama3_2/3B_full_single_device.yaml and 3B_lora /
3B_qlora_single_device.yaml, with the README's flags): weights in bf16 with no fp32 copy, SDPA attention, samples
packed to 4096 (the table's unpacked first row has no fixed shape to plan and is left out); the full rows with
torch.optim.AdamW, fused (its default on CUDA, foreach, is ruled out by the checkpointing row: `_ruled_out`), until
"8-bit AdamW" (the README names `AdamW8bit`; the tutorial section its row links names torchao's AdamW8bit and
bitsandbytes' PagedAdamW8bit: torchao's, the one of that name, its step compiled per parameter), compiled layer by
layer, cross-entropy in 8 chunks, their logits kept (CEWithChunkedOutputLoss, as torchtune.py plans it), every
compiled layer checkpointed (as torchtune.py plans it), the optimizer step in backward (one optimizer per
parameter), activations offloaded (OffloadActivations); LoRA and QLoRA: rank 64, alpha 128 on the query, value and
output projections and the MLP, fused AdamW, no step in backward, the rest as the row above them; QLoRA's base in
NF4 (torchao), every block projection. "Peak Memory Active" is torchtune's active_bytes.all.peak
(torchtune/training/memory.py): the plan's allocated. Where the published table leaves what ran open, the other
reading is planned too and printed beside the table, never counted.
"""

import pandas as pd

from utils import devices
from utils.plan import planner, torchtune
from utils.plan.config import Target, load_config
from utils.techniques import setup_of
from utils.techniques.parallel import World

NAME, MEMORY = "torchtune ladder", "peak active"
MEMORY_BAR, TOKENS_BAR = torchtune.MEMORY_BAR, torchtune.TOKENS_BAR
BATCH, SEQ, MODEL, GPU = 2, 4096, "hf:llama-3.2-3b", "a100-80gb"
LORA = {"lora_rank": 64, "lora_alpha": 128.0, "lora_targets": "q_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"}
FULL = "pure_bf16+flash"
FULL_SAVING = f"{FULL}+compile+chunked_ce+checkpointing+step_in_backward+offload_activations"
ADAMW = "+fused"  # the full rows' optimizer until 8-bit AdamW replaces it
ADAPTED = "flash+compile+chunked_ce+checkpointing+offload_activations+fused"
# (row, the suite's combination, its LoRA settings, tokens/s, peak active GiB)
ROWS = (
    ("+ packed dataset", FULL + ADAMW, {}, 7075, 60.0),
    ("+ compile", f"{FULL}+compile{ADAMW}", {}, 8998, 51.0),
    ("+ chunked cross-entropy", f"{FULL}+compile+chunked_ce{ADAMW}", {}, 9174, 42.9),
    ("+ activation checkpointing", f"{FULL}+compile+chunked_ce+checkpointing{ADAMW}", {}, 7210, 24.9),
    ("+ optimizer step in backward", f"{FULL}+compile+chunked_ce+checkpointing+step_in_backward{ADAMW}", {}, 7309,
     23.1),
    ("+ activation offloading", FULL_SAVING + ADAMW, {}, 7301, 21.8),
    ("+ 8-bit AdamW", f"{FULL_SAVING}+torchao_8bit", {}, 6960, 17.6),
    ("LoRA", f"pure_bf16+lora+{ADAPTED}", LORA, 8210, 8.5),
    ("QLoRA", f"qlora+{ADAPTED}", LORA, 8035, 4.6),
)
# where the table leaves what ran open: the row, the other reading, its combination
READINGS = (
    ("+ activation checkpointing", "foreach AdamW (torch.optim.AdamW's default on CUDA)",
     f"{FULL}+compile+chunked_ce+checkpointing"),
    ("+ 8-bit AdamW", "bitsandbytes' AdamW8bit", f"{FULL_SAVING}+8bit"),
    ("+ 8-bit AdamW", "bitsandbytes' PagedAdamW8bit, the full recipe's own optimizer (its state in unified "
     "memory, off the allocator's books)", f"{FULL_SAVING}+paged_8bit"),
)


def _config(technique, given, lora):
    return load_config(technique, given, batch=BATCH, seq=SEQ, model=MODEL, world=World(),
                       compile_scope=torchtune.SCOPE, chunk_logits=torchtune.KEPT_LOGITS, **lora)


def rows(given, table_row, seen):
    """Predicted vs published, per row (printed by `table_row`): peak active (the plan's allocated) and
    tokens/s, then the other readings; returns torchtune.compared()'s tuple per row; `seen` gets each
    comparison."""
    print(f"\n### torchtune's ladder: Llama 3.2 3B on one A100 80GB, batch {BATCH}, T={SEQ}, bf16 (peak active; "
          "tokens/s)\n")
    for cells in torchtune.header("row"):
        table_row(cells)
    target, out, cfg = Target(devices.by_key(GPU), offload_streams=True), [], None  # torchtune's OffloadActivations
    for label, technique, lora, tokens, gib in ROWS:
        cfg = _config(technique, given, lora)
        row, cells = torchtune.compared(label, technique, cfg, target, (tokens, gib), seen)
        out.append(row)
        table_row(cells)
    measured = {label: gib for label, *_, gib in ROWS}
    readings = list(_readings(given, target))
    print("\nthe other readings, planned (not counted above): " + "; ".join(
        f"{label} with {reading}: {plan.memory.allocated_mib / 1024:.1f} GiB "
        f"({plan.memory.allocated_mib / 1024 / measured[label] - 1:+.1%})" for label, reading, plan in readings))
    print("\nwhat differs: " + "; ".join((_ruled_out(readings[0][2].n_params, measured), *torchtune.differences(cfg))))
    return out


def _readings(given, target):
    for label, reading, technique in READINGS:
        yield label, reading, planner.plan(setup_of(technique)[1], _config(technique, given, {}), target)


def _ruled_out(n_params, measured):
    """Why the full rows count fused AdamW, from the parameter count alone: foreach AdamW's step holds the
    weights, gradients, both moments and a square-root buffer of every parameter at once (torch/optim/adam.py,
    _multi_tensor_adam: _foreach_sqrt of every exp_avg_sq), more than the checkpointing row measured."""
    floor, row = 5 * 2 * n_params / 2**30, READINGS[0][0]
    return (f"the full rows count fused AdamW (the LoRA recipes' own, `fused: True`): torch.optim.AdamW's default on "
            f"CUDA, foreach, holds in its step the weights, gradients, both moments and a square-root buffer of every "
            f"parameter, {floor:.1f} GiB in bf16 before any activation, above the {measured[row]} GiB measured at "
            f"'{row}': that row, and the rows above it (one optimizer down the ladder), cannot have run it")


def order_line(found):
    """The ladder's order, predicted against measured: memory and tokens/s (Spearman's rank correlation)."""
    ranks = [pd.Series([row[i] for row in found]).rank() for i in (3, 4, 5, 6)]
    memory, tokens = ranks[0].corr(ranks[1]), ranks[2].corr(ranks[3])
    same = (ranks[0] == ranks[1]).all()
    return (f"- {NAME} order: peak active {'the same as measured' if same else '**differs**'} (Spearman "
            f"{memory:.3f}); tokens/s Spearman {tokens:.3f}")
