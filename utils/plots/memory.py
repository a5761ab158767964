"""Memory charts: the breakdown per technique as stacked bars, and peak memory and tokens/s
against parameter count (make scaling); measured solid, predicted hatched or hollow."""

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from utils.analysis.stats import measured, predicted  # noqa: E402
from utils.results import MEMORY_PARTS as PARTS  # noqa: E402
from utils.units import MIB_PER_GIB


def plot_breakdown(table, title, path):
    labels = [f"{t}{' (predicted)' if k == 'predicted' else ''}" for t, k in zip(table["technique"], table["kind"])]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(table) + 2))
    left = pd.Series(0.0, index=table.index)
    for part in PARTS:
        values = table[f"mem_{part}_mib"].fillna(0) / MIB_PER_GIB
        bars = ax.barh(labels, values, left=left, label=part)
        for bar, kind in zip(bars, table["kind"]):
            if kind == "predicted":
                bar.set_hatch("//")
        left += values
    ax.invert_yaxis()
    ax.set(xlabel="memory at the step's peak (GiB)", title=title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_scaling(df, techniques, batch, seq, path, run_ids):
    """Peak memory and tokens/s against parameter count per technique, of the runs `run_ids` only (one
    make scaling's: never a file's other devices or settings pooled); measured solid, predicted (make plan)
    hollow and dashed. Returns the path, or None with nothing to draw."""
    rows = df[df["run_id"].isin(run_ids) & df["technique"].isin(techniques)]
    ran = measured(rows)
    fig, (ax_mem, ax_tok) = plt.subplots(1, 2, figsize=(13, 5))
    drawn = False
    for i, technique in enumerate(techniques):
        color = f"C{i}"
        mine = ran[ran["technique"] == technique]
        if len(mine):
            per_model = mine.groupby("n_params").agg(tokens=("tokens_per_s", "median"), alloc=("peak_alloc_mib", "max"),
                                                    tracked=("mem_peak_mib", "max"))
            memory = per_model["alloc"].fillna(per_model["tracked"]) / MIB_PER_GIB
            ax_mem.plot(per_model.index, memory, "o-", color=color, label=f"{technique} measured")
            ax_tok.plot(per_model.index, per_model["tokens"], "o-", color=color, label=f"{technique} measured")
            drawn = True
        planned = rows[predicted(rows) & (rows["technique"] == technique)].groupby("n_params").agg(
            alloc=("peak_alloc_mib", "last"), tracked=("mem_peak_mib", "last"))
        planned = planned["alloc"].fillna(planned["tracked"])  # CUDA's allocated, as the title says, where planned
        if len(planned):
            ax_mem.plot(planned.index, planned / MIB_PER_GIB, "o--", mfc="none", color=color,
                        label=f"{technique} predicted")
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    for ax, label in ((ax_mem, "peak memory (GiB)"), (ax_tok, "tokens/s (measured only)")):
        ax.set(xscale="log", yscale="log", xlabel="parameters", ylabel=label)
        if ax.get_legend_handles_labels()[0]:  # tokens/s has none where every model was planned
            ax.legend(fontsize=8)
    fig.suptitle(f"Scaling with model size, B={batch} T={seq} (predicted: CUDA peak allocated from make plan)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
