"""Does it still learn: time to a target loss, numerical drift against the baseline, and
seed 004's table of each run at its best validation perplexity. Pure functions of
results.csv rows (pandas), like utils/stats.py: a CSV from another machine works here.

- time to target: a run reaches TARGET_LOSS at its first evaluation whose validation loss
  is at or below it; the steps and training wall-clock (warm-up included, evaluations
  excluded) before that evaluation are its cost. "Faster per step" (the speedup) and "faster
  to the goal" then sit side by side.
- drift: a technique that should compute what the baseline computes (the same optimizer,
  learning rate, MLP, accumulation and seed, hence the same data in the same order) is
  compared step by step with the baseline's training loss; its largest deviation beyond
  DRIFT_TOLERANCE (by precision) is flagged.
"""

import math

import numpy as np
import pandas as pd

from utils import data, models
from utils.stats import BASELINE

# largest |training loss - the baseline's| at the same step, in nats, that still counts as the
# same arithmetic: fp32 only reorders sums (fused kernels, compile, recomputation); tf32, bf16
# and fp16 round every matmul to 10 or 7 mantissa bits, which shows in the loss
DRIFT_TOLERANCE = {"fp32": 1e-3, "reduced": 5e-2}
DRIFT_SAME = ("optimizer", "lr", "mlp", "accum", "seed", "data")  # as the baseline's, or drift is not asked


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
        raise TargetError(data.below_floor(target, below.index[0], below.iloc[0]))


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
    """Per technique: runs, runs that reached `target`, median steps and seconds of those."""
    runs = time_to_target(df, target)
    if runs.empty:
        return pd.DataFrame(columns=["runs", "reached", "steps", "seconds", "trained_steps"])
    return runs.groupby("technique", sort=False).agg(
        runs=("run_id", "size"),
        reached=("reached", "sum"),
        steps=("steps", "median"),
        seconds=("seconds", "median"),
        trained_steps=("trained_steps", "max"),
    )


def target_cell(row):
    if not row["reached"]:
        return f"not reached in {int(row['trained_steps'])} steps"
    some = f" ({int(row['reached'])}/{int(row['runs'])} runs)" if row["reached"] < row["runs"] else ""
    return f"{row['steps']:.0f} steps, {row['seconds']:.2f} s{some}"


def drift(df):
    """Per technique that should compute what the baseline computes: the largest deviation of
    its training loss from the baseline's at the same step (runs paired by repeat), the
    tolerance for its precision and whether it is beyond it."""
    training = _numeric(df[(df["status"] == "ok") & df["phase"].isin(["warmup", "measured"])], ["loss"])
    base = training[training["technique"] == BASELINE]
    if base.empty:
        return pd.DataFrame(columns=["max_abs", "tolerance", "flagged"])
    reference = base.iloc[0]
    base_runs = {repeat: _training_losses(rows) for repeat, rows in base.groupby("repeat")}
    out = {}
    for technique, rows in training.groupby("technique", sort=False):
        first = rows.iloc[0]
        if technique == BASELINE or any(str(first[c]) != str(reference[c]) for c in DRIFT_SAME):
            continue
        deviations = []
        for repeat, run in rows.groupby("repeat"):
            if repeat in base_runs:
                joined = pd.concat([_training_losses(run), base_runs[repeat]], axis=1, join="inner")
                deviations.append((joined[0] - joined[1]).abs().max())
        if deviations:
            tolerance = DRIFT_TOLERANCE["fp32" if first["dtype"] == "fp32" else "reduced"]
            worst = max(deviations)
            out[technique] = {"max_abs": worst, "tolerance": tolerance, "flagged": not worst <= tolerance}
    return pd.DataFrame.from_dict(out, orient="index", columns=["max_abs", "tolerance", "flagged"])


def drift_cell(row):
    verdict = "**beyond tolerance**" if row["flagged"] else "within"
    return f"{row['max_abs']:.2g} ({verdict} {row['tolerance']:g})"


def _fmt(value, spec):
    return "–" if value is None or value != value else format(value, spec)


def section(rows, summary, target=None):
    """The report's "does it still learn" table for one configuration (markdown), or "" if
    its runs made no evaluations."""
    ev = evaluations(rows)
    if ev.empty:
        return ""
    finals = ev.sort_values("train_steps").groupby("technique", sort=False)
    final, best = finals["val_loss"].last(), finals["val_loss"].min()
    reached = target_summary(rows, target) if target is not None else None
    drifts = drift(rows)
    floor = ev["loss_floor"].dropna()
    header = ["technique", "speedup [95% CI]", "final val loss", "best val loss (ppl)"]
    if target is not None:
        header += [f"to val loss {target:g}", "time-to-target speedup"]
    header.append("drift vs baseline: max |Δ loss| (tolerance)")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    base_seconds = reached.loc[BASELINE, "seconds"] if reached is not None and BASELINE in reached.index else np.nan
    for technique in final.index:
        speed = summary.loc[technique] if technique in summary.index else {}
        cells = [
            f"`{technique}`",
            f"{speed['speedup']:.2f} [{speed['speedup_lo']:.2f}, {speed['speedup_hi']:.2f}]"
            if "speedup" in speed and speed["speedup"] == speed["speedup"]
            else "–",
            _fmt(final[technique], ".3f"),
            f"{best[technique]:.3f} ({math.exp(min(best[technique], 700)):.3g})"
            if best[technique] == best[technique]
            else "–",
        ]
        if target is not None:
            row = reached.loc[technique]
            ratio = base_seconds / row["seconds"]
            cells += [target_cell(row), "–" if ratio != ratio else f"{ratio:.2f}×"]
        cells.append(drift_cell(drifts.loc[technique]) if technique in drifts.index else "–")
        lines.append("| " + " | ".join(cells) + " |")
    notes = [
        "Validation loss on held-out batches"
        + (
            f"; the data's floor (its entropy) is {floor.iloc[0]:.4f} nats"
            if len(floor)
            else "; the data's floor is unknown"
        )
        + ". Drift is asked of techniques with the baseline's optimizer, LR, MLP, accumulation, seed and data "
        f"(tolerance {DRIFT_TOLERANCE['fp32']:g} nats in fp32, {DRIFT_TOLERANCE['reduced']:g} in tf32/bf16/fp16)."
    ]
    if target is not None:
        notes.append(
            "Time to target: training wall-clock (warm-up included, evaluations excluded) and steps before the first "
            "evaluation at or below the target; its speedup is the baseline's seconds over the technique's."
        )
    return "### Does it still learn\n\n" + "\n".join(lines) + "\n\n" + " ".join(notes)


# seed 004's table: every run at the evaluation of its best validation perplexity


def _peak_mib(rows):
    for column in ("peak_alloc_mib", "peak_rss_mib"):
        if rows[column].notna().any():
            return rows[column].max(), "alloc" if column == "peak_alloc_mib" else "RSS"
    return np.nan, ""


def best_evaluations(df):
    """One row per run with evaluations, numbered in the order the runs were made (seed
    004's "experiment numbers"): architecture, layers, optimizer, LR, the train and
    validation perplexity at its best evaluation (train: exp of the mean training loss since
    the evaluation before, seed 004's per-epoch train perplexity), which evaluation and
    after how many steps and seconds, the whole run's training seconds, peak memory."""
    ok = df[df["status"] == "ok"]
    rows = []
    for number, (run_id, run) in enumerate(ok.groupby("run_id", sort=False), start=1):
        ev = evaluations(run)
        finite = ev[np.isfinite(ev["val_loss"].astype(float))]
        if ev.empty:
            continue
        first = run.iloc[0]
        memory, kind = _peak_mib(run)
        row = {
            "exp": number,
            "run_id": run_id,
            "arch": models.arch(first["model"]).upper() if first["model"] in models.PRESETS else first["model"],
            "model": first["model"],
            "layers": int(first["layers"]) if first["layers"] == first["layers"] else np.nan,
            "optimizer": first["technique"],
            "lr": first["lr"],
            "n_params": first["n_params"],
            "train_s": ev["train_s"].max(),
            "trained_steps": ev["train_steps"].max(),
            "memory_mib": memory,
            "memory_kind": kind,
            "floor": first["loss_floor"],
        }
        if finite.empty:
            row.update(val_ppl=np.nan, train_ppl=np.nan, epoch=np.nan, at_step=np.nan, at_s=np.nan)
        else:
            best = finite.loc[finite["val_loss"].idxmin()]
            row.update(
                val_ppl=math.exp(best["val_loss"]),
                train_ppl=math.exp(min(best["train_loss"], 700))
                if best["train_loss"] == best["train_loss"]
                else np.nan,
                epoch=int(best["step"]),
                at_step=int(best["train_steps"]),
                at_s=best["train_s"],
            )
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    return table.sort_values(["arch", "layers", "optimizer"], kind="stable").reset_index(drop=True)


def best_table(table, target_runs=None):
    """Seed 004's table in markdown: sorted by architecture, layers, optimizer; the best
    validation perplexity of each architecture in bold (the whole row)."""
    header = [
        "exp",
        "architecture",
        "layers",
        "optimizer",
        "LR",
        "params",
        "train PPL",
        "validation PPL",
        "eval (step)",
        "training s to it",
        "training s in all",
        "peak memory MiB",
    ]
    if target_runs is not None:
        header.append("to target")
    best_of_arch = table.groupby("arch")["val_ppl"].transform("min")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, row in table.iterrows():
        cells = [
            str(row["exp"]),
            row["arch"],
            str(row["layers"]),
            row["optimizer"],
            _fmt(row["lr"], "g"),
            f"{row['n_params'] / 1e6:.2f}M",
            _fmt(row["train_ppl"], ".3f"),
            _fmt(row["val_ppl"], ".3f"),
            f"{_fmt(row['epoch'], '.0f')} ({_fmt(row['at_step'], '.0f')})",
            _fmt(row["at_s"], ".2f"),
            _fmt(row["train_s"], ".2f"),
            f"{_fmt(row['memory_mib'], ',.0f')} ({row['memory_kind']})",
        ]
        if target_runs is not None:
            hit = target_runs.set_index("run_id").loc[row["run_id"]]
            cells.append(f"{hit['seconds']:.2f} s" if hit["reached"] else "not reached")
        if row["val_ppl"] == best_of_arch[i]:  # never true of a NaN
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _name(row):
    layers = f"{row['layers']} layer{'s' if row['layers'] != 1 else ''}"
    return f"{row['arch']} with {layers} and {row['optimizer']} (exp {row['exp']})"


def answer(table, df, target=None):
    """Seed 004's question, computed: which configuration if you care about wall-clock,
    which for generalisation. Returns markdown bullet lines."""
    ran = table[table["val_ppl"].notna()]
    if ran.empty:
        return "- No run reached a finite validation loss: nothing to recommend."
    lines = []
    if target is not None:
        runs = time_to_target(df, target).set_index("run_id")
        hits = ran[ran["run_id"].map(runs["reached"])]
        if len(hits):
            fastest = hits.loc[hits["run_id"].map(runs["seconds"]).idxmin()]
            seconds = runs.loc[fastest["run_id"], "seconds"]
            lines.append(
                f"- **Wall-clock:** {_name(fastest)}: validation loss {target:g} after {seconds:.2f} s "
                f"of training, the soonest of the {len(hits)} runs that reached it ({len(ran) - len(hits)} did not)."
            )
        else:
            lines.append(f"- **Wall-clock:** no run reached validation loss {target:g}.")
    else:
        # the same budget for all: the training time of the shortest run
        budget = ran["train_s"].min()
        ev = evaluations(df)
        within = ev[(ev["train_s"] <= budget) & ev["run_id"].isin(ran["run_id"])]
        best_by_run = within.groupby("run_id")["val_loss"].min()
        winner = ran.set_index("run_id").loc[best_by_run.idxmin()]
        lines.append(
            f"- **Wall-clock:** {_name(winner)}: the lowest validation "
            f"perplexity within {budget:.2f} s of training (the shortest run's time, so every run had it): "
            f"{math.exp(best_by_run.min()):.3f}."
        )
    best = ran.loc[ran["val_ppl"].idxmin()]
    gap = best["val_ppl"] - best["train_ppl"]
    floor = best["floor"]
    lines.append(
        f"- **Generalisation:** {_name(best)}: the lowest validation perplexity, {best['val_ppl']:.3f} "
        f"(train {best['train_ppl']:.3f}, gap {gap:+.3f})"
        + (f"; the data's floor is {math.exp(floor):.3f}." if floor == floor else ".")
    )
    return "\n".join(lines)
