"""Does it still learn: time to a target loss and numerical drift against the baseline (the
grid's best-evaluation table is grid.py). Pure functions of results.csv rows (pandas), like
stats.py: a CSV from another machine works here.

- time to target: a run reaches TARGET_LOSS at its first evaluation whose validation loss
  is at or below it; the steps and training wall-clock (warm-up included, evaluations
  excluded) before that evaluation are its cost. "Faster per step" (the speedup) and "faster
  to the goal" then sit side by side. A technique's figure is the median over all of its runs,
  one that never reached the target counted as slower than any that did.
- final and best validation loss: each run's last and lowest evaluation, then the mean and the
  median over runs (final_and_best).
- drift: a technique that should compute what the baseline computes (the same optimizer,
  learning rate, MLP, accumulation and seed, hence the same data in the same order, and no
  adapters: LoRA trains other weights) is
  compared step by step with the baseline's training loss; its largest deviation beyond
  DRIFT_TOLERANCE (by precision) is flagged. A step fp16's GradScaler skipped did no update,
  so from the step after it the two runs' weights differ by a whole update, whatever the
  arithmetic: they are compared up to and including the first skipped step only, and the
  cell says so.
"""

import collections
import math

import numpy as np
import pandas as pd

from utils import checks
from utils.analysis.stats import censored_median, final_over_runs
from utils.catalog import BASELINE

# largest |training loss - the baseline's| at the same step, in nats, that still counts as the
# same arithmetic: fp32 only reorders sums (fused kernels, compile, recomputation); tf32, bf16
# and fp16 round every matmul to 10 or 7 mantissa bits, which shows in the loss
DRIFT_TOLERANCE = {"fp32": 1e-3, "reduced": 5e-2}
# as the baseline's, or drift is not asked: an adapter (LoRA, QLoRA) trains other weights, another training problem
DRIFT_SAME = ("optimizer", "lr", "mlp", "accum", "seed", "data", "adapter")


class TargetError(ValueError):
    """A TARGET_LOSS that is not a number, or that no run could ever reach."""


def parse_target(text):
    """TARGET_LOSS as given to the report or a driver: blank -> None, else a positive number."""
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise TargetError(f"TARGET_LOSS must be a positive number, got {text!r}")
    return value


def check_target(df, target):
    """Refuse a target below the floor (entropy) of data some of the runs trained on."""
    if target is None:
        return
    floors = df.dropna(subset=["loss_floor"]).groupby("data")["loss_floor"].first()
    below = floors[floors > target]
    if len(below):
        raise TargetError(checks.below_floor(target, below.index[0], below.iloc[0]))


def _numeric(df, columns):
    # a diverged run writes nan / inf, which results.read keeps as text (only blanks are missing)
    return df.assign(**{c: pd.to_numeric(df[c], errors="coerce") for c in columns})


def evaluations(df):
    return _numeric(df[(df["status"] == "ok") & (df["phase"] == "eval")], ["val_loss", "val_ppl", "train_loss"])


def _training_losses(rows):
    """One run's training loss by global step (warm-up steps first, then measured)."""
    warm = rows[rows["phase"] == "warmup"].sort_values("step")
    measured = rows[rows["phase"] == "measured"].sort_values("step")
    steps = np.concatenate([warm["step"].to_numpy(), measured["step"].to_numpy() + len(warm)])
    return pd.Series(np.concatenate([warm["loss"].to_numpy(), measured["loss"].to_numpy()]), index=steps)


def time_to_target(df, target):
    """Per run with evaluations: whether it reached `target`, the steps and training seconds
    before the evaluation that first did, and how many steps it trained in all."""
    rows = []
    for run_id, group in evaluations(df).groupby("run_id", sort=False):
        group = group.sort_values("train_steps")
        hit = group[group["val_loss"] <= target]
        rows.append(
            {
                "run_id": run_id,
                "technique": group["technique"].iloc[0],
                "reached": len(hit) > 0,
                "steps": hit["train_steps"].iloc[0] if len(hit) else np.nan,
                "seconds": hit["train_s"].iloc[0] if len(hit) else np.nan,
                "trained_steps": group["train_steps"].max(),
            }
        )
    return pd.DataFrame(rows, columns=["run_id", "technique", "reached", "steps", "seconds", "trained_steps"])


def target_summary(df, target):
    """Per technique: runs, runs that reached `target`, and the median steps and seconds to it over all of its
    runs, a run that did not reach it counted as slower than any that did (stats.censored_median: none unless
    more than half reached it): the runs that reached it alone would be a selection of the lucky ones."""
    runs = time_to_target(df, target)
    out = {}
    for technique, mine in runs.groupby("technique", sort=False):
        out[technique] = {"runs": len(mine), "reached": int(mine["reached"].sum()),
                          "steps": censored_median(mine["steps"], mine["reached"]),
                          "seconds": censored_median(mine["seconds"], mine["reached"]),
                          "trained_steps": mine["trained_steps"].max()}
    return pd.DataFrame.from_dict(out, orient="index", columns=["runs", "reached", "steps", "seconds", "trained_steps"])


def target_cell(row):
    if not row["reached"]:
        return f"not reached in {int(row['trained_steps'])} steps"
    some = f"{int(row['reached'])}/{int(row['runs'])} runs reached it"
    if row["seconds"] != row["seconds"]:
        return f"{some}: no median"
    return f"{row['steps']:.0f} steps, {row['seconds']:.2f} s" + (f" ({some})" if row["reached"] < row["runs"] else "")


def target_speedup(row, base):
    """The baseline's median seconds to the target over the technique's, only where every run of both reached
    it: with a run that did not, the ratio would leave out the worst of them (the reach count says so)."""
    if base is None or row["reached"] < row["runs"] or base["reached"] < base["runs"]:
        return "–"
    return f"{base['seconds'] / row['seconds']:.2f}×"


def first_skipped_step(rows):
    """The global step (warm-up first) of a run's first GradScaler-skipped step, or None."""
    warm = rows[rows["phase"] == "warmup"].sort_values("step")
    measured = rows[rows["phase"] == "measured"].sort_values("step")
    skipped = pd.concat([warm["scaler_skipped"], measured["scaler_skipped"]]).isin([True, "True"]).to_numpy()
    return int(np.argmax(skipped)) if skipped.any() else None


def drift(df):
    """Per technique that should compute what the baseline computes: the largest deviation of
    its training loss from the baseline's at the same step (each run against each baseline run of
    its repeat index; steps after a GradScaler skip left out), the tolerance for its precision,
    whether it is beyond it, and the last step compared when a skip cut the comparison short."""
    columns = ["max_abs", "tolerance", "flagged", "compared_to"]
    training = _numeric(df[(df["status"] == "ok") & df["phase"].isin(["warmup", "measured"])], ["loss"])
    base = training[training["technique"] == BASELINE]
    if base.empty:
        return pd.DataFrame(columns=columns)
    reference = base.iloc[0]
    # a repeat index's baseline runs: a technique run twice at one index (make all run again) is two runs
    base_runs = collections.defaultdict(list)
    for _, rows in base.groupby("run_id", sort=False):
        base_runs[rows["repeat"].iloc[0]].append(_training_losses(rows))
    out = {}
    for technique, rows in training.groupby("technique", sort=False):
        first = rows.iloc[0]
        if technique == BASELINE or any(str(first[c]) != str(reference[c]) for c in DRIFT_SAME):
            continue
        deviations, cut = [], None
        for _, run in rows.groupby("run_id", sort=False):
            skip = first_skipped_step(run)
            losses = _training_losses(run)
            if skip is not None:  # the weights differ by a whole update from the next step on
                losses, cut = losses[losses.index <= skip], skip if cut is None else min(cut, skip)
            for base_losses in base_runs.get(run["repeat"].iloc[0], []):
                joined = pd.concat([losses, base_losses], axis=1, join="inner")
                deviations.append((joined[0] - joined[1]).abs().max())
        if deviations:
            tolerance = DRIFT_TOLERANCE["fp32" if first["dtype"] == "fp32" else "reduced"]
            worst = max(deviations)
            out[technique] = {"max_abs": worst, "tolerance": tolerance, "flagged": not worst <= tolerance,
                              "compared_to": cut}
    return pd.DataFrame.from_dict(out, orient="index", columns=columns)


def drift_cell(row):
    verdict = "**beyond tolerance**" if row["flagged"] else "within"
    cut = row["compared_to"]
    if cut is None or cut != cut:
        return f"{row['max_abs']:.2g} ({verdict} {row['tolerance']:g})"
    steps = "step 0" if cut == 0 else f"steps 0–{int(cut)}"
    return (f"{row['max_abs']:.2g} ({verdict} {row['tolerance']:g}) over {steps} only: the GradScaler skipped step "
            f"{int(cut)}'s update, so later steps differ by a whole update")


DIVERGED = "nan (diverged)"  # a run whose last loss is not a number


def fmt(value, spec):
    return "–" if value is None or value != value else format(value, spec)


def final_and_best(ev):
    """Per technique, from its evaluations: the final validation loss (each run's last evaluation, then their mean
    as the summary's final loss: nan where a run diverged) and the best (each run's lowest, then their median:
    the lowest over all runs would pick the luckiest)."""
    ev = ev.sort_values("train_steps", kind="stable")  # stable: each run's evaluations stay in the order made
    final = ev.groupby("technique", sort=False).apply(final_over_runs, "val_loss", include_groups=False)
    best = ev.groupby(["technique", "run_id"], sort=False)["val_loss"].min().groupby("technique", sort=False).median()
    return final, best


def section(rows, summary, target=None):
    """The report's "does it still learn" table for one configuration (markdown), or "" if
    its runs made no evaluations."""
    ev = evaluations(rows)
    if ev.empty:
        return ""
    final, best = final_and_best(ev)
    reached = target_summary(rows, target) if target is not None else None
    drifts = drift(rows)
    floor = ev["loss_floor"].dropna()
    header = ["technique", "speedup [95% CI]", "final val loss", "best val loss (ppl)"]
    if target is not None:
        header += [f"to val loss {target:g}", "time-to-target speedup"]
    header.append("drift vs baseline: max |Δ loss| (tolerance)")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    base = reached.loc[BASELINE] if reached is not None and BASELINE in reached.index else None
    for technique in final.index:
        speed = summary.loc[technique] if technique in summary.index else {}
        cells = [
            f"`{technique}`",
            f"{speed['speedup']:.2f} [{speed['speedup_lo']:.2f}, {speed['speedup_hi']:.2f}]"
            if "speedup" in speed and speed["speedup"] == speed["speedup"]
            else "–",
            fmt(final[technique], ".3f") if final[technique] == final[technique] else DIVERGED,
            f"{best[technique]:.3f} ({math.exp(min(best[technique], 700)):.3g})"
            if best[technique] == best[technique]
            else "–",
        ]
        if target is not None:
            row = reached.loc[technique]
            cells += [target_cell(row), target_speedup(row, base)]
        cells.append(drift_cell(drifts.loc[technique]) if technique in drifts.index else "–")
        lines.append("| " + " | ".join(cells) + " |")
    notes = [
        "Validation loss on held-out batches"
        + (
            f"; the data's floor (its entropy) is {floor.iloc[0]:.4f} nats"
            if len(floor)
            else "; the data's floor is unknown"
        )
        + ". Final val loss: each run's last evaluation, the mean over runs (nan where a run diverged); best: each "
        "run's lowest evaluation, the median over runs"
        + ". Drift is asked of techniques with the baseline's optimizer, LR, MLP, accumulation, seed and data, "
        "training all of its weights (not adapters) "
        f"(tolerance {DRIFT_TOLERANCE['fp32']:g} nats in fp32, {DRIFT_TOLERANCE['reduced']:g} in tf32/bf16/fp16)."
    ]
    if target is not None:
        notes.append(
            "Time to target: training wall-clock (warm-up included, evaluations excluded) and steps before the first "
            "evaluation at or below the target, the median over all runs, one that did not reach it counted as "
            "slower than any that did (no median unless more than half reached it); its speedup is the baseline's "
            "seconds over the technique's, shown only where every run of both reached the target."
        )
    return "### Does it still learn\n\n" + "\n".join(lines) + "\n\n" + " ".join(notes)
