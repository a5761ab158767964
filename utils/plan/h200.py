"""This suite's own runs on an NVIDIA H200, for `make plan_check`: `make gpu_check` (gpt2, B=4,
T=256, 20 steps) and `make run` at the H100 reference shape (gpt2, B=16, T=1024, 25 steps), torch
2.11.0+cu130, 2026-12-04, committed in docs/results/nvidia_h200/ (results.csv,
reference_shape.csv; docs/gpu.md says how they were taken). Peak allocated
(`torch.cuda.max_memory_allocated`) against the plan's allocated, and tokens/s (the median step's)
against the plan's. The Hopper CUDA context in utils/plan/device.py was measured on these runs, so
their device totals are no independent check and are not compared here; allocated and tokens/s are.
"""

from pathlib import Path

from utils import results
from utils.devices import by_key
from utils.plan import bands, planner
from utils.plan.config import Target, load_config
from utils.techniques import setup_of

NAME, MEMORY = "H200 (this suite's runs)", "allocated"
MEMORY_BAR, TOKENS_BAR = 0.05, 0.20  # the H100 table's allocated bar; the step-time issue's 20%
FOLDER = Path(__file__).resolve().parents[2] / "docs" / "results" / "nvidia_h200"
# (file, batch, seq, the techniques compared: every measured one the planner models)
RUNS = (
    ("results.csv", 4, 256, ("baseline", "tf32", "bf16", "fp16", "flash", "fused", "cudagraphs", "8bit", "stack")),
    ("reference_shape.csv", 16, 1024, ("flash+fused", "stack", "cudagraphs", "flash+8bit")),
)
WHY = ("at B=4, T=256 the step is the host's on that box: ~35-50 us per eager op and ~34 per compiled kernel "
       "measured (tf32 no faster than fp32), where the plan assumes 10 and 4 (docs/gpu.md)")


def _measured(rows, technique):
    ran = rows[(rows["technique"] == technique) & (rows["phase"] == "measured") & (rows["status"] == "ok")]
    return ran["peak_alloc_mib"].max(), ran["tokens_per_s"].median()


def rows(given, table_row, seen):
    """Predicted vs measured, per run (printed by `table_row`); returns (label, allocated error,
    tokens/s error) per run; `seen` gets each comparison (bands.observe)."""
    target, out = Target(by_key("h200")), []
    print(f"\n### {NAME}: gpt2, torch 2.11 (peak allocated; tokens/s)\n")
    table_row(["technique", "B x T", "measured MiB", "predicted MiB", "error", f"within {MEMORY_BAR:.0%}",
               "measured tokens/s", "predicted tokens/s (kind of plan)", "error", f"within {TOKENS_BAR:.0%}"])
    table_row(["---"] * 10)
    for file, batch, seq, techniques in RUNS:
        measured = results.read(FOLDER / file)
        for technique in techniques:
            allocated, tokens = _measured(measured, technique)
            plan = planner.plan(setup_of(technique)[1], load_config(technique, given, model="gpt2", batch=batch,
                                                                    seq=seq), target)
            errors = (plan.memory.allocated_mib / allocated - 1, plan.time.tokens_per_s / tokens - 1)
            out.append((f"{technique}, B={batch}", *errors))
            bands.observe(seen, plan, "allocated", errors[0], out[-1][0])
            bands.observe(seen, plan, "step time", bands.step_error(errors[1]), out[-1][0])
            kind = bands.kind_of(plan, "step time")  # the kind of plan its band is read for
            table_row([f"`{technique}`", f"{batch} x {seq}", f"{allocated:,.1f}", f"{plan.memory.allocated_mib:,.1f}",
                       f"{errors[0]:+.1%}", bands.verdict(errors[0], MEMORY_BAR), f"{tokens:,.0f}",
                       f"{plan.time.tokens_per_s:,.0f} ({kind})", f"{errors[1]:+.1%}",
                       bands.verdict(errors[1], TOKENS_BAR)])
    print("\nwhy the B=4 step times miss: " + WHY)
    return out
