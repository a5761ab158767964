"""`make plan_check`: the planner against every measured peak it can model, with the error."""

import functools

from utils import techniques as t
from utils.plan import planner
from utils.plan.config import load_config

BAR = 0.10  # within 10% of the measured peak


def _stack(*steps):
    def setup(run):
        t.strict_fp32(run)
        for step in steps:
            step(run)

    return setup


LION = functools.partial(t.lion, lr_scale=1 / 3, weight_decay_scale=3)
LION8 = functools.partial(t.lion_8bit, lr_scale=1 / 3, weight_decay_scale=3)
# the H100 reference table of ../shared/README.md (GPT-2 124M, T=1024, bare training loop,
# torch 2.11+cu130, measured 2026-11-23): (configuration, the suite's technique functions
# that make it, or None where the planner cannot model one, batch, peak allocated GiB)
H100_PEAKS = (
    ("fp32, AdamW, manual attention (baseline)", _stack(t.adamw), 16, 31.9),
    ("tf32 (tf32)", _stack(t.tf32, t.adamw), 16, 31.9),
    ("bf16 autocast (bf16)", _stack(t.autocast_bf16, t.adamw), 16, 29.6),
    ("bf16 + SDPA flash (flash)", _stack(t.autocast_bf16, t.flash_attention, t.adamw), 16, 16.0),
    ("bf16 + flash + fused AdamW", _stack(t.autocast_bf16, t.flash_attention, t.fused_adamw), 16, 16.1),
    ("bf16 + flash + AdamW8bit", _stack(t.autocast_bf16, t.flash_attention, t.adamw_8bit), 16, 15.4),
    ("bf16 + flash + Lion (bnb)", _stack(t.autocast_bf16, t.flash_attention, LION), 16, 15.6),
    ("bf16 + flash + Lion8bit", _stack(t.autocast_bf16, t.flash_attention, LION8), 16, 15.2),
    ("bf16 + flash + fused + checkpointing", _stack(t.autocast_bf16, t.flash_attention, t.checkpoint_blocks,
                                                    t.fused_adamw), 16, 11.4),
    ("fp16 + flash + fused", _stack(t.autocast_fp16, t.flash_attention, t.fused_adamw), 16, 16.4),
    ("fp32 + torch.compile (compile)", _stack(t.adamw, t.compile_model), 16, 29.4),
    ("bf16 + flash + fused + compile (stack)", _stack(t.autocast_bf16, t.flash_attention, t.fused_adamw,
                                                      t.compile_model), 16, 11.5),
    ("same, B=32 (stack)", _stack(t.autocast_bf16, t.flash_attention, t.fused_adamw, t.compile_model), 32, 21.3),
)


def check():
    """Print predicted vs the H100's peak allocated for every reference configuration."""
    print("plan_check: predicted peak allocated vs H100 measured (../shared/README.md), GPT-2 124M, T=1024")
    print("| configuration | B | H100 GiB | predicted GiB | error | within 10% |")
    print("|---|---|---|---|---|---|")
    errors, missed = [], []
    for label, setup, batch, measured_gib in H100_PEAKS:
        cfg = load_config("plan_check", ["--batch", str(batch), "--seq", "1024", "--model", "gpt2", "--layers", "12"])
        try:
            predicted = planner.plan(setup, cfg).peak_mib / 1024
        except planner.NotModelled as why:
            print(f"| {label} | {batch} | {measured_gib} | not modelled: {why} | – | – |", flush=True)
            continue
        error = predicted / measured_gib - 1
        errors.append(abs(error))
        ok = abs(error) <= BAR
        missed += [] if ok else [label]
        print(f"| {label} | {batch} | {measured_gib} | {predicted:.2f} | {error:+.1%} | {'yes' if ok else '**no**'} |",
              flush=True)
    print(f"plan_check: {len(errors) - len(missed)} of {len(errors)} modelled configurations within 10% "
          f"(largest error {max(errors):.1%})" + (f"; missed: {', '.join(missed)}" if missed else ""))
    return 0
