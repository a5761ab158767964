"""torchtitan's published multi-GPU runs, for `make plan_check`: Llama 3.1 8B trained with FSDP2
on 8 and on 128 H100s (pytorch/torchtitan, benchmarks/llama3_h100_202412_torchtitan.md, Tables 1
and 3, torch of 2024-12-23).

What they ran (torchtitan at 9dec370, 2024-12-26: train_configs/llama3_8b.toml, config_manager.py,
parallelisms/parallelize_llama.py): sequence 8192, local batch 2 (the table's; the toml says 1),
selective activation checkpointing per op (each block saves its flash attention's output and every
other matmul's: wq, wv, w1, w2; the rest recomputed), FSDP2 with bf16 parameters all-gathered and
fp32 gradient reductions (MixedPrecisionPolicy, no autocast; the last block and the root not
resharded after forward), torch.optim.AdamW with foreach kernels, cross-entropy on fp32 logits,
with and without torch.compile (per block), on Grand Teton hosts: 8 H100s (96 GB HBM2e, 2.4
TB/s, 500 W) per host over NVLink, 400 Gb/s RDMA per GPU between hosts. "Memory" is its memory
monitor's max reserved (reserved_bytes.all.peak over the last 10 steps): the plan's reserved.
Tokens/s per GPU: the 90th iteration's.

What the suite plans: `flash+selective_checkpointing` (bf16 autocast, SDPA flash, AdamW with
foreach kernels as on CUDA, torchtitan's per-op checkpointing policy: utils/techniques/selective.py,
FSDP2's bf16 block weights as make fsdp shards under an autocast: utils/techniques/parallel.py)
and the same compiled block by block (COMPILE_SCOPE=blocks), the `hf:llama-3.1-8b` config, GPU
h100-hbm2e, the allocator with expandable segments as torchtitan's launcher sets it (run_llama_train.sh:
PYTORCH_CUDA_ALLOC_CONF="expandable_segments:True"; its multi-node Slurm example sets nothing, so the default
allocator's reading is printed beside, not counted). What differs, and which way it moves the figures
(DIFFERENCES).
"""

import dataclasses

from utils.devices import by_key, nodes_for
from utils.plan import bands, planner, timing
from utils.plan.config import Target, load_config
from utils.plan.device import device_memory
from utils.techniques import setup_of
from utils.techniques.parallel import World

NAME, MEMORY = "torchtitan", "max reserved"
ALLOCATOR = "expandable_segments"  # run_llama_train.sh's PYTORCH_CUDA_ALLOC_CONF (above)
MEMORY_BAR, TOKENS_BAR = 0.10, 0.25  # max reserved within 10%, tokens/s per GPU within 25%
# (configuration, the suite's technique, GPUs, tokens/s per GPU, max reserved GiB)
ROWS = (
    ("FSDP", "flash+selective_checkpointing", 8, 5762, 82.4),
    ("FSDP + torch.compile", "flash+selective_checkpointing+compile", 8, 6667, 77.0),
    ("FSDP", "flash+selective_checkpointing", 128, 5605, 67.0),
    ("FSDP + torch.compile", "flash+selective_checkpointing+compile", 128, 6514, 62.0),
)
DIFFERENCES = (
    "checkpointing: the same per-op policy (selective_checkpointing: flash's output and four of seven matmul "
    "outputs kept per block)",
    "precision: the blocks as torchtitan's (FSDP2 all-gathers bf16 weights, reduce-scatters fp32 gradients), the "
    "root not: its embeddings and head stay fp32 under bf16 autocast (the residual stream fp32, as one process "
    "under autocast has it): 2 x 0.5B weights unsharded at 4 bytes, not 2, their all-gather buffer too (cached on "
    "FSDP2's copy-in stream), and the head's bf16 copy saved for backward: about 4.9 GiB more than torchtitan "
    "reserves",
    "compile: both compile each block apart and run the rest eager (torchtitan's loss on fp32 logits)",
    "the GPU's peak: SXM's taken (torchtitan: between SXM's and NVL's at 500 W), so the plan is high in tokens/s",
)
LOW_PEAKS = "h100-nvl"  # the other end of torchtitan's "between SXM and NVL"


def rows(given, table_row, seen):
    """Predicted vs published, per row (each printed by `table_row`, a list of cells -> a markdown
    row): max reserved and tokens/s per GPU; returns (label, memory error, tokens/s error) per row;
    `seen` gets each comparison (bands.observe)."""
    target, out, low, memory_bound, native = Target(by_key("h100-hbm2e"), ALLOCATOR), [], [], [], []
    print("\n### torchtitan: Llama 3.1 8B, FSDP2, local batch 2, T=8192, H100 96GB HBM2e (max reserved; "
          "tokens/s per GPU)\n")
    table_row(["configuration", "GPUs", "measured GiB", "predicted GiB (allocated / reserved)", "error",
          f"within {MEMORY_BAR:.0%}", "measured tokens/s", "predicted tokens/s (exposed comm ms)", "error",
          f"within {TOKENS_BAR:.0%}"])
    table_row(["---"] * 10)
    for label, technique, gpus, tokens, gib in ROWS:
        nodes = nodes_for(gpus)
        cfg = load_config(technique, given, batch=2, seq=8192, model="hf:llama-3.1-8b", world=World("fsdp", size=gpus),
                          compile_scope="blocks")
        plan = planner.plan(setup_of(technique)[1], cfg, dataclasses.replace(target, nodes=nodes))
        reserved, step = plan.memory.reserved_mib / 1024, plan.time
        default = device_memory(plan, dataclasses.replace(target, allocator="native", nodes=nodes)).reserved_mib / 1024
        native.append(f"{label}, {gpus} GPUs: {default:.1f} GiB ({default / gib - 1:+.1%})")
        errors = (reserved / gib - 1, step.tokens_per_s / tokens - 1)
        out.append((f"{label}, {gpus} GPUs", *errors))
        low.append(_tokens_at_low_peaks(plan, cfg, target, nodes) / tokens - 1)
        if gpus == ROWS[0][2]:  # where the time goes, eager and compiled, on the first row's GPUs
            ms = timing.gpu_ms_by_kind(plan.ops, target.gpu, plan.tf32)
            memory_bound.append(f"{label}: {ms['memory']:,.0f} ms of {step.step_ms:,.0f} ({ms['memory fp32']:,.0f} in "
                                f"fp32)")
        bands.observe(seen, plan, "reserved", errors[0], out[-1][0])
        bands.observe(seen, plan, "step time", bands.step_error(errors[1]), out[-1][0])
        exposed = sum(step.comm.exposed_ms.values())
        table_row([f"{label} (`{technique}`)", f"{gpus} ({nodes} node{'s' * (nodes > 1)})", gib,
              f"{plan.memory.allocated_mib / 1024:.1f} / **{reserved:.1f}**", f"{errors[0]:+.1%}",
              bands.verdict(errors[0], MEMORY_BAR), f"{tokens:,}",
              f"{step.tokens_per_s:,.0f} ({exposed:.0f})", f"{errors[1]:+.1%}",
              bands.verdict(errors[1], TOKENS_BAR)])
    print("\nwhat differs: " + "; ".join(DIFFERENCES))
    print(f"\nthe other readings, not counted: the same steps at {by_key(LOW_PEAKS).name}'s peaks, tokens/s per "
          "GPU " + ", ".join(f"{error:+.1%}" for error in low) + "; max reserved with the default allocator (no "
          "expandable segments): " + ", ".join(native))
    print(f"\nthe memory-bound ops of the planned step on {ROWS[0][2]} GPUs (GPU roofline): " + "; ".join(memory_bound)
          + ". The suite's eager step is Hugging Face's Llama under autocast, its residual stream fp32; torchtitan's "
          "is bf16 throughout, fewer bytes, so compile saves it less than it saves the suite's: the eager row's "
          "agreement is partly those bytes offsetting the peak above")
    return out


def _tokens_at_low_peaks(plan, cfg, target, nodes):
    """The planned step's tokens/s per GPU at LOW_PEAKS' compute peaks, the rest of the GPU as planned."""
    gpu = dataclasses.replace(target.gpu, peaks=by_key(LOW_PEAKS).peaks)
    other = Target(gpu, nodes=nodes)
    step = timing.step_time(plan.ops, gpu, plan.time.tokens, plan.tf32, plan.graphed,
                            comm=planner.comm_of(plan, cfg.world, other))
    return step.tokens_per_s
