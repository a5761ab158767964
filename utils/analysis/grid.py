"""The LSTM-vs-GPT grid's table: every run at the evaluation of its best validation perplexity,
and the grid's answer ("which configuration if you care about wall-clock, which for
generalisation"), computed from those rows. Pure functions of results.csv rows."""

import math

import numpy as np
import pandas as pd

from utils import models
from utils.analysis.convergence import evaluations, fmt, time_to_target


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
    """The grid's table in markdown: sorted by architecture, layers, optimizer; the best
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
            fmt(row["lr"], "g"),
            f"{row['n_params'] / 1e6:.2f}M",
            fmt(row["train_ppl"], ".3f"),
            fmt(row["val_ppl"], ".3f"),
            f"{fmt(row['epoch'], '.0f')} ({fmt(row['at_step'], '.0f')})",
            fmt(row["at_s"], ".2f"),
            fmt(row["train_s"], ".2f"),
            f"{fmt(row['memory_mib'], ',.0f')} ({row['memory_kind']})",
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
    """The grid's question, computed: which configuration if you care about wall-clock,
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
