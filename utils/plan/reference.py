"""`make plan_check`: the planner against every measured peak it can model, with the error."""

from utils.plan import planner
from utils.plan.config import load_config
from utils.techniques import setup_of

BAR = 0.10  # within 10% of the measured peak


# the H100 reference table of ../shared/README.md (GPT-2 124M, T=1024, bare training loop,
# torch 2.11+cu130, measured 2026-11-23): (configuration, the suite's technique or combination
# that makes it, batch, peak allocated GiB)
H100_PEAKS = (
    ("fp32, AdamW, manual attention", "baseline", 16, 31.9),
    ("tf32", "tf32", 16, 31.9),
    ("bf16 autocast", "bf16", 16, 29.6),
    ("bf16 + SDPA flash", "flash", 16, 16.0),
    ("bf16 + flash + fused AdamW", "flash+fused", 16, 16.1),
    ("bf16 + flash + AdamW8bit", "flash+8bit", 16, 15.4),
    ("bf16 + flash + Lion (bnb)", "flash+lion", 16, 15.6),
    ("bf16 + flash + Lion8bit", "flash+lion8bit", 16, 15.2),
    ("bf16 + flash + fused + checkpointing", "flash+checkpointing+fused", 16, 11.4),
    ("fp16 + flash + fused", "fp16+flash+fused", 16, 16.4),
    ("fp32 + torch.compile", "compile", 16, 29.4),
    ("bf16 + flash + fused + compile", "stack", 16, 11.5),
    ("same, B=32", "stack", 32, 21.3),
)


def check():
    """Print predicted vs the H100's peak allocated for every reference configuration."""
    print("plan_check: predicted peak allocated vs H100 measured (../shared/README.md), GPT-2 124M, T=1024")
    print("| configuration | B | H100 GiB | predicted GiB | error | within 10% |")
    print("|---|---|---|---|---|---|")
    errors, missed = [], []
    for label, technique, batch, measured_gib in H100_PEAKS:
        label = f"{label} (`{technique}`)"
        setup = setup_of(technique)[1]
        cfg = load_config(technique, ["--batch", str(batch), "--seq", "1024", "--model", "gpt2", "--layers", "12"])
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
