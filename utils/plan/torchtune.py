"""torchtune's published single-GPU fine-tunes, for `make plan_check`: Llama 3.1 8B on one RTX
4090 (pytorch/torchtune README, "Memory and training speed", the 4090 rows: batch 2, sequences
packed to 2048, bf16, torch.compile), full, LoRA and QLoRA.

What they ran (the recipes' configs, llama3_1/8B_full_single_device.yaml, 8B_lora_single_device
and 8B_qlora_single_device, as the README's footnotes set them): weights in bf16 with no fp32 copy,
attention through SDPA (the suite's `flash`), activation checkpointing of every layer,
cross-entropy in 8 chunks of the output projection, every chunk's bf16 logits kept for backward and each
chunk's upcast and cross-entropy compiled (CEWithChunkedOutputLoss, training.compile_loss; the suite's
CHUNK_LOGITS=keep: its own default recomputes them); full:
bitsandbytes' PagedAdamW8bit stepped in backward (optimizer_in_bwd); LoRA: rank 8, alpha 16 on
the query and value projections; QLoRA: rank 8, alpha 16 on q, k, v, the output projection and
the MLP, the base in NF4 (torchao's to_nf4); both with fused AdamW (their configs' `fused: True`).
"Peak memory" is torchtune's memory log, torch.cuda.memory_stats()["active_bytes.all.peak"]
(torchtune/training/memory.py, get_memory_stats: peak_memory_active): the tensors the allocator
holds at the peak, the plan's allocated.

What the suite plans: the same techniques as its combinations, compiled block by block as torchtune compiles
each layer, the loss's chunks too: compiled whole, backward is one graph that returns every gradient at its end,
and the optimizer step in backward would free none early. Each compiled layer sits inside its checkpoint
(COMPILE_SCOPE=blocks_in_checkpoint): the recipes compile the layers (training.compile_model) before
set_activation_checkpointing wraps them (recipes/*_single_device.py, _setup_model), so backward reruns the
compiled forward, then runs the layer's own backward graph, not one graph holding both (torchtitan's order).
"""

from utils import devices
from utils.plan import bands, planner
from utils.plan.config import Target, load_config
from utils.techniques import setup_of
from utils.techniques.parallel import World

NAME, MEMORY = "torchtune", "peak active"
MEMORY_BAR, TOKENS_BAR = 0.10, 0.25  # the issue's: memory within 10%, tokens/s within 25%
KEPT_LOGITS = "keep"  # CHUNK_LOGITS as CEWithChunkedOutputLoss runs: every chunk's logits kept for backward
SCOPE = "blocks_in_checkpoint"  # COMPILE_SCOPE as the recipes compile: each layer, then checkpointed (above)
LORA_QV = {"lora_rank": 8, "lora_alpha": 16.0, "lora_targets": "q_proj,v_proj"}
LORA_ALL = {**LORA_QV, "lora_targets": "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"}
# (configuration, the suite's combination, its LoRA settings, tokens/s, peak active GiB)
ROWS = (
    ("full: paged AdamW8bit in backward",
     "pure_bf16+flash+checkpointing+chunked_ce+paged_8bit+step_in_backward+compile", {}, 1650, 18.9),
    ("LoRA r8 on q, v", "pure_bf16+flash+lora+checkpointing+chunked_ce+compile+fused", LORA_QV, 3083, 16.2),
    ("QLoRA r8 on q, k, v, o, MLP", "qlora+flash+checkpointing+chunked_ce+compile+fused", LORA_ALL, 2413, 7.4),
)


def differences(cfg):
    """What differs from torchtune's runs in each of its tables, at `cfg`'s shapes."""
    return (
        f"packing: torchtune masks each packed document (flex attention), the plan attends over the whole {cfg.seq}",
        "offloading (rows that offload): torchtune leaves the output projection and the loss on the GPU, the suite "
        "offloads what they save too (the kept logits leave after the loss and come back at backward's start: the "
        "same peak); the copies are timed on the host link as torchtune's side streams run them, beside the "
        "phase's kernels (the suite's own offload_activations copies on the compute stream, which waits)",
    )


def header(first):
    """The table's two header rows, its first column named `first`."""
    return [[first, "measured GiB", "predicted GiB (allocated / device total)", "error", f"within {MEMORY_BAR:.0%}",
             "measured tokens/s", "predicted tokens/s", "error", f"within {TOKENS_BAR:.0%}"], ["---"] * 9]


def compared(label, technique, cfg, target, published, seen):
    """`technique` planned at `cfg` on `target` against torchtune's `published` (tokens/s, peak active GiB):
    ((label, memory error, tokens/s error, measured GiB, predicted GiB, measured tokens/s, predicted
    tokens/s), the row's table cells, the plan); `seen` gets each comparison (bands.observe)."""
    tokens, gib = published
    plan = planner.plan(setup_of(technique)[1], cfg, target)
    allocated, predicted = plan.memory.allocated_mib / 1024, plan.time.tokens_per_s
    row = (label, allocated / gib - 1, predicted / tokens - 1, gib, allocated, tokens, predicted)
    bands.observe(seen, plan, "allocated", row[1], label)
    bands.observe(seen, plan, "step time", bands.step_error(row[2]), label)
    return row, [f"{label} (`{technique}`)", gib, f"**{allocated:.1f}** / {plan.memory.total_mib / 1024:.1f}",
                 f"{row[1]:+.1%}", bands.verdict(row[1], MEMORY_BAR), f"{tokens:,}",
                 f"{predicted:,.0f}", f"{row[2]:+.1%}", bands.verdict(row[2], TOKENS_BAR)], plan


def rows(given, table_row, seen):
    """Predicted vs published, per row (printed by `table_row`): peak active (the plan's allocated)
    and tokens/s; returns compared()'s tuple per row; `seen` gets each comparison."""
    target, out = Target(devices.by_key("rtx-4090"), offload_streams=True), []
    print("\n### torchtune: Llama 3.1 8B on one RTX 4090, batch 2, T=2048, bf16 (peak active; tokens/s)\n")
    for cells in header("configuration"):
        table_row(cells)
    for label, technique, lora, tokens, gib in ROWS:
        cfg = load_config(technique, given, batch=2, seq=2048, model="hf:llama-3.1-8b", world=World(),
                          compile_scope=SCOPE, chunk_logits=KEPT_LOGITS, **lora)
        row, cells, _ = compared(label, technique, cfg, target, (tokens, gib), seen)
        out.append(row)
        table_row(cells)
    print("\nwhat differs: " + "; ".join(differences(cfg)))
    return out
