"""Learning curves from results.csv: loss (left axis) and perplexity (right axis, exp of
the loss) against training steps and against training wall-clock, training and validation,
with the data's floor drawn where it is known: one panel per optimizer (technique), one
figure per model.

- `make plots` (plots_for): for a configuration whose runs made evaluations,
  learning_curves_steps.png and learning_curves_wallclock.png, a panel per technique.
- `make grid` (grid_figures): grid_<model>_<layers>L.png per model and depth, a panel per
  optimizer, perplexity against steps (top row) and against wall-clock (bottom row).
"""

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from utils import checks  # noqa: E402
from utils.analysis import convergence  # noqa: E402

TRAIN, VAL, FLOOR = "#457b9d", "#e76f51", "#2a9d8f"
X_LABEL = {
    "train_steps": "training steps (warm-up included)",
    "train_s": "training wall-clock, s (evaluations excluded)",
}


def _training_steps(run):
    """A run's per-step training loss against its global step (warm-up first)."""
    warm = run[run["phase"] == "warmup"].sort_values("step")
    measured = run[run["phase"] == "measured"].sort_values("step")
    # the loss of step i is recorded after i+1 training steps, as an evaluation's train_steps counts
    steps = np.concatenate([warm["step"] + 1, measured["step"] + 1 + len(warm)])
    return steps, np.concatenate([warm["loss"], measured["loss"]])


def _panel(ax, rows, x, perplexity):
    """One technique's runs: validation and (window-mean) training curves at the evaluations;
    against steps also the training loss of every step, faint."""
    values = np.exp if perplexity else (lambda v: v)
    for i, (_, run) in enumerate(rows.groupby("run_id", sort=False)):
        ev = convergence.evaluations(run).sort_values("train_steps")
        first = i == 0  # one legend entry per kind, however many repeats
        if x == "train_steps" and not perplexity:
            steps, losses = _training_steps(run)
            ax.plot(
                steps,
                losses,
                color=TRAIN,
                alpha=0.25,
                linewidth=0.8,
                label="training loss, each step" if first else None,
            )
        ax.plot(
            ev[x],
            values(ev["train_loss"]),
            "o-",
            color=TRAIN,
            markersize=3,
            label="training, mean since the previous evaluation" if first else None,
        )
        ax.plot(ev[x], values(ev["val_loss"]), "s-", color=VAL, markersize=3, label="validation" if first else None)
    floor = rows["loss_floor"].dropna()
    if len(floor):
        ax.axhline(
            values(floor.iloc[0]),
            color=FLOOR,
            linestyle="--",
            linewidth=1,
            label=f"floor: the data's entropy, {floor.iloc[0]:.4f} nats",
        )


def _loss_axes(ax, ev, floor):
    # the first evaluation (the untrained model) sits far above the rest: start the axis low
    # enough for the floor and high enough for the curves after it
    top = ev["val_loss"].sort_values().iloc[-2] if len(ev) > 1 else ev["val_loss"].max()
    bottom = min(ev["val_loss"].min(), floor if floor == floor else np.inf)
    if np.isfinite(top) and np.isfinite(bottom) and top > bottom:
        ax.set_ylim(bottom - 0.05 * (top - bottom), top + 0.15 * (top - bottom))
    # the right axis reads the same curves as perplexity
    ax.secondary_yaxis(
        "right", functions=(lambda v: np.exp(np.clip(v, None, 700)), lambda p: np.log(np.clip(p, 1e-12, None)))
    )


def learning_curves(df, x, path, title):
    """A panel per technique: loss and perplexity against `x` (train_steps or train_s)."""
    techniques = list(dict.fromkeys(convergence.evaluations(df)["technique"]))
    columns = min(4, len(techniques))
    rows_n = math.ceil(len(techniques) / columns)
    fig, axes = plt.subplots(rows_n, columns, figsize=(4.2 * columns, 3.4 * rows_n + 0.8), squeeze=False)
    floor = df["loss_floor"].dropna().iloc[0] if df["loss_floor"].notna().any() else np.nan
    for ax, technique in zip(axes.flat, techniques):
        rows = df[df["technique"] == technique]
        _panel(ax, rows, x, perplexity=False)
        _loss_axes(ax, convergence.evaluations(rows), floor)
        ax.set(title=technique, xlabel=X_LABEL[x], ylabel="loss (nats); right: perplexity")
    for ax in axes.flat[len(techniques) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plots_for(df, out_dir, prefix=""):
    """The learning-curve figures of one configuration, if its runs made evaluations."""
    if convergence.evaluations(df).empty:
        return []
    row = df.iloc[-1]
    what = f"{row['device']} · {row['model']} · B={row['batch']} T={row['seq']} · {row['data']}"
    out = Path(out_dir)
    return [
        learning_curves(df, "train_steps", out / f"{prefix}learning_curves_steps.png", f"Loss against steps\n{what}"),
        learning_curves(
            df, "train_s", out / f"{prefix}learning_curves_wallclock.png", f"Loss against wall-clock\n{what}"
        ),
    ]


def grid_figures(df, table, out_dir, prefix=""):
    """The grid's figures: per model and depth, a panel per optimizer; perplexity against
    steps (top) and training wall-clock (bottom), log scale."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for (model, layers), cells in table.groupby(["model", "layers"], sort=False):
        fig, axes = plt.subplots(2, len(cells), figsize=(3.6 * len(cells) + 0.6, 6.6), squeeze=False, sharey=True)
        for column, (_, cell) in enumerate(cells.iterrows()):
            rows = df[df["run_id"] == cell["run_id"]]
            for row, x in enumerate(("train_steps", "train_s")):
                ax = axes[row, column]
                _panel(ax, rows, x, perplexity=True)
                ax.set_yscale("log")
                ax.set(
                    xlabel=X_LABEL[x],
                    title=f"({'abcdefgh'[column]}) {cell['optimizer']}, LR {cell['lr']:g}" if row == 0 else "",
                )
            axes[0, column].set_ylabel("perplexity" if column == 0 else "")
            axes[1, column].set_ylabel("perplexity" if column == 0 else "")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9)
        arch = cells["arch"].iloc[0]
        fig.suptitle(
            f"{arch} ({model}), {layers} layer{'s' if layers != 1 else ''}: perplexity over steps and wall-clock"
        )
        fig.tight_layout(rect=(0, 0.05, 1, 1))
        path = out / f"{prefix}grid_{checks.file_part(model)}_{layers}L.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
