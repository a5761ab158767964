"""`make lrsweep TECHNIQUE=sgd`: a short log-spaced learning-rate sweep. The technique
trains once per LR (LRS, default 1e-4 to 1 in half decades), each run a fresh process
appending to RESULTS_FILE as any run does; then the LR whose run reached the lowest
validation loss is named, with a warning when it is an end of the sweep (the best may lie
beyond), and the GRID_LRS setting that makes `make grid` use it.

usage: python -m utils.drivers.lrsweep   (TECHNIQUE, LRS and the run settings from the environment)
"""

import math
import sys

import numpy as np

from utils import checks, registry, results, settings
from utils.analysis import convergence
from utils.drivers.runner import FAILED, run
from utils.measure import config


def _default_lrs():
    """1e-4, 3e-4, 1e-3, ..., 0.3, 1: half decades, rounded as people write them."""
    return [float(f"{m}e{e}") for e in range(-4, 1) for m in (1, 3)][:-1]


def sweep_table(df, run_ids):
    """Per run of the sweep: LR, best and final validation loss (the final is NaN or inf when it diverged)."""
    ev = convergence.evaluations(df[df["run_id"].isin(run_ids)]).sort_values("train_steps")
    by_run = ev.groupby("run_id", sort=False)
    # the final evaluation as it is: GroupBy.last would skip a NaN, hiding the divergence
    table = by_run.agg(lr=("lr", "first"), best=("val_loss", "min"), final=("val_loss", lambda v: v.iloc[-1]))
    return table.sort_values("lr")


def verdict(table, technique):
    finite = table[np.isfinite(table["final"])]  # a run that diverged is no candidate, whatever it did before
    if finite.empty:
        return f"lrsweep: every LR diverged for {technique}: try smaller ones (LRS=...)"
    best = finite.loc[finite["best"].idxmin()]
    lr = f"{best['lr']:g}"
    line = f"lrsweep: best LR for {technique}: {lr} (best validation loss {best['best']:.4f})"
    if best["lr"] in (table["lr"].min(), table["lr"].max()):
        line += "; it is an end of the sweep, so a better one may lie beyond it"
    return line + f"\nlrsweep: to use it in the grid: make grid GRID_LRS='{technique}={lr}'"


@checks.command("lrsweep")
def main():
    given = settings.read()
    technique = registry.one_chosen(given)
    lrs = [checks.number("LRS", v) for v in given.lrs] or _default_lrs()
    cfg = config.load(technique, given)
    if not cfg.eval_every:
        raise checks.BadInput("the sweep compares validation losses: EVAL_EVERY=0 turns evaluation off")
    before = set(results.read(cfg.results_file)["run_id"]) if _has_rows(cfg.results_file) else set()
    failed = 0
    for i, lr in enumerate(lrs, 1):
        print(f"\n=== [{i}/{len(lrs)}] {technique} LR={lr:g}", flush=True)
        failed += run(technique, {"LR": f"{lr:g}"}).status in FAILED
    df = results.read(cfg.results_file)
    ours = df[(df["technique"] == technique) & ~df["run_id"].isin(before)]
    table = sweep_table(df, set(ours["run_id"]))
    print(f"\n=== {technique}: validation loss by LR ({cfg.model}, {cfg.data}, {cfg.steps} steps)")
    for _, row in table.iterrows():
        diverged = "" if math.isfinite(row["final"]) else "  (diverged)"
        print(f"  LR {row['lr']:<8g} best {row['best']:.4f}  final {row['final']:.4f}{diverged}", flush=True)
    print(verdict(table, technique))
    return 1 if failed else 0


def _has_rows(path):
    try:
        return not results.read(path).empty
    except results.ResultsFileError:
        return False


if __name__ == "__main__":
    sys.exit(main())
