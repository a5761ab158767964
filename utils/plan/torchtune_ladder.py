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
import torch

from utils import devices, models
from utils.plan import planner, torchtune
from utils.plan.config import Target, load_config
from utils.techniques import setup_of
from utils.techniques.parallel import World
from utils.techniques.stages import BF16_WEIGHTS

NAME, MEMORY = "torchtune ladder", "peak active"
EIGHT_BIT = "+ 8-bit AdamW"
L2_FLUSH_BYTES = 256e6  # what Triton's do_bench zeroes between timings to flush the L2 (triton/testing.py, 3.1)
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
    (EIGHT_BIT, f"{FULL_SAVING}+torchao_8bit", {}, 6960, 17.6),
    ("LoRA", f"pure_bf16+lora+{ADAPTED}", LORA, 8210, 8.5),
    ("QLoRA", f"qlora+{ADAPTED}", LORA, 8035, 4.6),
)
# where the table leaves what ran open: the row, the other reading, its combination
READINGS = (
    ("+ activation checkpointing", "foreach AdamW (torch.optim.AdamW's default on CUDA)",
     f"{FULL}+compile+chunked_ce+checkpointing"),
    (EIGHT_BIT, "bitsandbytes' AdamW8bit", f"{FULL_SAVING}+8bit"),
    (EIGHT_BIT, "bitsandbytes' PagedAdamW8bit, the full recipe's own optimizer (its state in unified "
     "memory, off the allocator's books)", f"{FULL_SAVING}+paged_8bit"),
)


def _config(technique, given, lora):
    return load_config(technique, given, batch=BATCH, seq=SEQ, model=MODEL, world=World(),
                       compile_scope=torchtune.SCOPE, chunk_logits=torchtune.KEPT_LOGITS, **lora)


def rows(given, table_row, seen):
    """Predicted vs published, per row (printed by `table_row`): peak active (the plan's allocated) and
    tokens/s, then the other readings; returns torchtune.compared()'s tuple per row, a memory miss that a
    reading explains with the reason after it; `seen` gets each comparison."""
    print(f"\n### torchtune's ladder: Llama 3.2 3B on one A100 80GB, batch {BATCH}, T={SEQ}, bf16 (peak active; "
          "tokens/s)\n")
    for cells in torchtune.header("row"):
        table_row(cells)
    target, out, cfg = Target(devices.by_key(GPU), offload_streams=True), [], None  # torchtune's OffloadActivations
    plans = {}
    for label, technique, lora, tokens, gib in ROWS:
        cfg = _config(technique, given, lora)
        row, cells, plans[label] = torchtune.compared(label, technique, cfg, target, (tokens, gib), seen)
        out.append(row)
        table_row(cells)
    measured = {label: gib for label, *_, gib in ROWS}
    readings = list(_readings(given, target))
    print("\nthe other readings, planned (not counted above): " + "; ".join(
        f"{label} with {reading}: {plan.memory.allocated_mib / 1024:.1f} GiB "
        f"({plan.memory.allocated_mib / 1024 / measured[label] - 1:+.1%})" for label, reading, plan in readings))
    first = _first_step_in_torch_2_5(plans[EIGHT_BIT]) / 2**30
    print(f"\n{EIGHT_BIT} as torch 2.5.1 (the stable release when the table was published) runs its first step (not "
          "counted above): its inductor autotunes a kernel at its first call, cloning on the GPU each argument the "
          "kernel writes in place, once per place it is passed (torch/_inductor/runtime/triton_heuristics.py, "
          "CachingAutotuner.clone_args; torch 2.6 keeps the clones within the peak so far of a step's graph, "
          "copy_args_to_cpu_if_needed), beside Triton's 256 MB L2-flush buffer (triton/testing.py, do_bench), and "
          "torchtune never resets the peak after that step. torchao's step of the largest parameter, the tied "
          "embedding, is one kernel writing the weight and both moments' codes and scales in place (each passed in "
          "and out) beside an fp32 buffer of the weight's size, as torch 2.5.1 generates it: "
          f"{first:.1f} GiB at its first call ({first / measured[EIGHT_BIT] - 1:+.1%}); the plan, torch 2.13's "
          "step, holds no clone above its peak")
    if abs(first / measured[EIGHT_BIT] - 1) <= MEMORY_BAR:  # its miss explained, for the bars (reference.check)
        out = [(*row, "torch 2.5.1's first-call autotune") if row[0] == EIGHT_BIT else row for row in out]
    print("\nwhat differs: " + "; ".join((_ruled_out(readings[0][2].n_params, measured), *torchtune.differences(cfg))))
    return out


def _first_step_in_torch_2_5(plan):
    """Bytes held as torchao AdamW8bit's step of the model's largest parameter is autotuned at its first call
    under torch 2.5.1 (the kernel read off the wrapper inductor 2.5.1 generates for it: the weight, both codes
    and both fp32 scales, one per 256 elements, written in place and passed in and out; an fp32 buffer of the
    weight's size): every weight, the 8-bit state, that parameter's gradient, the buffer, the clones and the
    L2-flush buffer, from `plan` (the row planned) and the model's largest parameter (on the meta device)."""
    with torch.device("meta"):
        model = models.build_model(MODEL, SEQ)
    n = max(p.numel() for p in model.parameters())
    width = 2 if plan.record["dtype"] == BF16_WEIGHTS else 4  # the weight's and its gradient's bytes per element
    written_in_place = n * width + 2 * n + 2 * 4 * n // 256  # the weight, both moments' codes and scales
    held = (plan.breakdown["params"] + plan.breakdown["optimizer"]) * 2**20 + n * width + 4 * n
    return held + 2 * written_in_place + L2_FLUSH_BYTES


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
