"""The LSTM-vs-GPT grid's table: every run at the evaluation of its best validation perplexity,
each cell (model, depth, optimizer) the median of its runs, and the grid's answer ("which
configuration if you care about wall-clock, which for generalisation"), computed from those
rows. A run whose steps hold a stall (a step over STALL times its run's median: another job
took the machine) is flagged, and left out of the wall-clock answer, so one stall cannot
decide it. Pure functions of results.csv rows."""

import math

import numpy as np
import pandas as pd

from utils import models
from utils.analysis.convergence import evaluations, fmt, time_to_target
from utils.analysis.stats import censored_median

STALL = 10  # a step over this many times its run's median step is a stall, not the model's time
CELL = ["arch", "model", "layers", "optimizer", "lr"]
MEDIANS = ["train_ppl", "val_ppl", "at_step", "at_s", "train_s", "memory_mib"]


def stalls(run):
    """How many of a run's measured steps took over STALL times their median (warm-up steps
    are slow by nature: first calls, allocation, compilation)."""
    steps = run[(run["phase"] == "measured") & (run["status"] == "ok")]["step_ms"].dropna()
    return int((steps > STALL * steps.median()).sum()) if len(steps) else 0


def _peak_mib(rows):
    for column in ("peak_alloc_mib", "peak_rss_mib"):
        if rows[column].notna().any():
            return rows[column].max(), "alloc" if column == "peak_alloc_mib" else "RSS"
    return np.nan, ""


def best_evaluations(df):
    """One row per run with evaluations, numbered in the order the runs were made (the
    table's "experiment numbers"): architecture, layers, optimizer, LR, the train and
    validation perplexity at its best evaluation (train: exp of the mean training loss since
    the evaluation before: a per-epoch train perplexity), which evaluation and
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
            "arch": models.label(first["model"]),
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
            "stalls": stalls(run),
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


def cells(table):
    """One row per cell: the median over its runs of each figure, how many runs and how many
    stalled, and the run whose validation perplexity is the median (its figure is drawn)."""
    out = []
    for key, runs in table.groupby(CELL, sort=False, dropna=False):
        ranked = runs.sort_values("val_ppl", na_position="last")
        middle = ranked.iloc[(len(ranked) - 1) // 2]
        out.append({**dict(zip(CELL, key)), **{c: runs[c].median() for c in MEDIANS}, "exp": runs["exp"].min(),
                    "run_id": middle["run_id"], "epoch": middle["epoch"], "n_params": middle["n_params"],
                    "memory_kind": middle["memory_kind"], "floor": middle["floor"], "runs": len(runs),
                    "stalled": int((runs["stalls"] > 0).sum()), "unstalled": list(runs.loc[runs["stalls"] == 0,
                                                                                             "run_id"])})
    return pd.DataFrame(out)


def best_table(table, target_runs=None):
    """The grid's table in markdown, a row per cell (cells(): medians over runs): sorted by
    architecture, layers, optimizer; the best validation perplexity of each architecture in
    bold (the whole row); stalled runs flagged."""
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
        "runs",
    ]
    if target_runs is not None:
        header.append("to target (median, runs that reached it)")
    best_of_arch = table.groupby("arch")["val_ppl"].transform("min")
    by_run = target_runs.set_index("run_id") if target_runs is not None else None
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, row in table.iterrows():
        cells = [
            str(row["exp"]),
            row["arch"],
            str(row["layers"]),
            row["optimizer"],
            fmt(row["lr"], "g"),
            f"{row['n_params'] / 1e6:.2f}M",
            fmt(row["train_ppl"], ".3f"),
            fmt(row["val_ppl"], ".3f"),
            f"{fmt(row['epoch'], '.0f')} ({fmt(row['at_step'], '.0f')})",
            fmt(row["at_s"], ".2f"),
            fmt(row["train_s"], ".2f"),
            f"{fmt(row['memory_mib'], ',.0f')} ({row['memory_kind']})",
            f"{row['runs']}" + (f" (⚠ {row['stalled']} stalled: left out of the wall-clock answer)" if row["stalled"]
                                else ""),
        ]
        if target_runs is not None:  # as the wall-clock answer has it: the cell's unstalled runs
            seconds, hits, runs = _time_to_target(row["unstalled"], by_run)
            cells.append(f"{fmt(seconds, '.2f')} s ({hits}/{runs})" if runs else "– (every run stalled)")
        if row["val_ppl"] == best_of_arch[i]:  # never true of a NaN
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


ALL_STALLED = "- **Wall-clock:** every run stalled (see the runs column): no wall-clock answer here."


def _name(row):
    layers = f"{row['layers']} layer{'s' if row['layers'] != 1 else ''}"
    return f"{row['arch']} with {layers} and {row['optimizer']} (exp {row['exp']})"


def _wall_clock(ran, df):
    """The cell with the lowest median validation perplexity within the same training time for
    all (the shortest unstalled run's), from its unstalled runs; (line, runs left out)."""
    clean = ran[ran["stalls"] == 0]
    if clean.empty:
        return ALL_STALLED, len(ran)
    budget = clean["train_s"].min()
    ev = evaluations(df)
    within = ev[(ev["train_s"] <= budget) & ev["run_id"].isin(clean["run_id"])]
    best_by_run = within.groupby("run_id")["val_loss"].min()
    per_cell = clean.set_index("run_id").loc[best_by_run.index].assign(best=best_by_run).groupby(CELL)["best"].median()
    winner = ran[ran[CELL].apply(tuple, axis=1) == per_cell.idxmin()].iloc[0]
    return (f"- **Wall-clock:** {_name(winner)}: the lowest validation perplexity within {budget:.2f} s of training "
            f"(the shortest run's time, so every run had it): {math.exp(per_cell.min()):.3f}.", len(ran) - len(clean))


def _to_target(ran, df, target):
    """The cell with the lowest median training seconds to `target` over its unstalled runs in `ran` (a diverged
    one too), a run that did not reach it counted as slower than any that did (stats.censored_median: a cell
    where no more than half reached it has no median); (line, runs left out)."""
    clean = ran[ran["stalls"] == 0]
    if clean.empty:
        return ALL_STALLED, len(ran)
    runs = time_to_target(df, target).set_index("run_id")
    per_cell = []  # (median seconds, runs that reached it, runs, the cell's first run)
    for _, mine in clean.groupby(CELL, sort=False, dropna=False):
        per_cell.append((*_time_to_target(list(mine["run_id"]), runs), mine.loc[mine["exp"].idxmin()]))
    timed = [cell for cell in per_cell if cell[0] == cell[0]]
    if not timed:
        reached = sum(cell[1] for cell in per_cell)
        return (f"- **Wall-clock:** no cell has a median time to validation loss {target:g}: in none did more than "
                f"half of its unstalled runs reach it ({reached} of {len(clean)} runs did).", len(ran) - len(clean))
    seconds, hits, runs_in_cell, winner = min(timed, key=lambda cell: cell[0])
    return (f"- **Wall-clock:** {_name(winner)}: validation loss {target:g} after {seconds:.2f} s of training, the "
            f"lowest median over a cell's runs ({hits} of its {runs_in_cell} reached it; a run that did not counts as "
            f"slower than any that did); {len(timed)} of {len(per_cell)} cells have such a median.",
            len(ran) - len(clean))


def _time_to_target(run_ids, runs):
    """(the median training seconds to the target over `run_ids`, those that reached it, their count): a run that
    did not reach it (or has no row in `runs`, time_to_target's by run_id) counted as slower than any that did."""
    ids = pd.Series(run_ids, dtype=object)
    reached = ids.map(runs["reached"]).fillna(False).astype(bool)
    return censored_median(ids.map(runs["seconds"]), reached), int(reached.sum()), len(ids)


def answer(table, df, target=None):
    """The grid's question, computed: which configuration if you care about wall-clock,
    which for generalisation (a cell's median over its runs). `table`: best_evaluations(),
    a row per run. Returns markdown bullet lines."""
    ran = table[table["val_ppl"].notna()]
    if ran.empty:
        return "- No run reached a finite validation loss: nothing to recommend."
    lines, left_out = [], 0
    if target is not None:
        # every run, a diverged one (no finite evaluation) too: it counts as not reaching the target
        line, left_out = _to_target(table, df, target)
        lines.append(line)
    else:
        line, left_out = _wall_clock(ran, df)
        lines.append(line)
    if left_out:
        lines.append(f"- **Left out of the wall-clock answer:** {left_out} run(s) with a step over {STALL}× their "
                     "median (another job took the machine); rerun them, or use REPEATS=3.")
    by_cell = cells(ran)
    best = by_cell.loc[by_cell["val_ppl"].idxmin()]
    gap = best["val_ppl"] - best["train_ppl"]
    floor = best["floor"]
    runs_note = f", median of {best['runs']} runs" if best["runs"] > 1 else ""
    lines.append(
        f"- **Generalisation:** {_name(best)}: the lowest validation perplexity, {best['val_ppl']:.3f} "
        f"(train {best['train_ppl']:.3f}, gap {gap:+.3f}{runs_note})"
        + (f"; the data's floor is {math.exp(floor):.3f}." if floor == floor else ".")
    )
    return "\n".join(lines)
