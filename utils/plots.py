"""`make plots`: step time per step, a relative heatmap and speedup bars, from results.csv.

Reads the CSV only (never the model or the loop), so a file from another machine plots
here without a GPU. Only one configuration (device, model, batch, seq, data) is plotted at
a time: a speedup is only meaningful against a baseline of the same configuration. By
default that is the configuration of the newest run.

usage: python -m utils.plots [--results results.csv] [--out plots] [--prefix a100_]
"""
import argparse
import sys
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FuncFormatter, ScalarFormatter  # noqa: E402
import seaborn as sns  # noqa: E402

from utils import results  # noqa: E402

CONFIG = ["device", "model", "batch", "seq", "data"]
BASELINE = "baseline"


def latest_config(df):
    """Rows of the newest run's configuration, and a note naming any others left out."""
    newest = df.sort_values("timestamp_utc").iloc[-1]
    same = (df[CONFIG] == newest[CONFIG]).all(axis=1)
    others = df.loc[~same, CONFIG].drop_duplicates()
    note = f"{len(others)} other configuration(s) in the file are not mixed in" if len(others) else ""
    return df[same], note


def measured(df):
    return df[(df["status"] == "ok") & (df["phase"] == "measured")]


def technique_order(df):
    names = list(dict.fromkeys(df["technique"]))
    return sorted(names, key=lambda name: name != BASELINE)  # baseline first, then as run


def speedups(df):
    """Mean baseline step time / mean step time, per technique (> 1 is faster)."""
    means = measured(df).groupby("technique")["step_ms"].mean()
    if BASELINE not in means:
        return None
    return (means[BASELINE] / means).reindex([t for t in technique_order(df) if t in means])


def relative_windows(df, windows=10):
    """Median step time per (technique, step window), divided by the baseline's."""
    rows = measured(df).copy()
    size = max(1, -(-int(rows["step"].max() + 1) // windows))  # ceil: at most `windows` windows
    rows["window"] = (rows["step"].astype(int) // size) * size
    table = rows.pivot_table(index="technique", columns="window", values="step_ms", aggfunc="median")
    if BASELINE not in table.index:
        return None
    table.columns = [f"{start}-{start + size - 1}" for start in table.columns]
    return (table / table.loc[BASELINE]).reindex([t for t in technique_order(df) if t in table.index])


def title(df, what):
    row = df.iloc[-1]
    params = f", {row['n_params'] / 1e6:.1f}M params" if pd.notna(row["n_params"]) else ""
    return f"{what}\n{row['device']} · {row['model']}{params} · B={row['batch']} T={row['seq']} · {row['data']}"


def plot_lines(df, path):
    fig, ax = plt.subplots(figsize=(10, 5.5))
    sns.lineplot(data=measured(df), x="step", y="step_ms", hue="technique", hue_order=[t for t in technique_order(df) if t in set(measured(df)["technique"])], estimator="median", errorbar=("pi", 50), ax=ax)
    times = measured(df)["step_ms"]
    if times.max() / times.min() > 20:  # one slow technique would flatten the rest
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if str(v)[0] in "25" else ""))
    ax.set(xlabel="measured step (warm-up excluded)", ylabel="step time (ms)", title=title(df, "Step time per step"))
    ax.legend(title="technique", bbox_to_anchor=(1.01, 1), loc="upper left")
    return _save(fig, path)


def plot_heatmap(table, df, path):
    fig, ax = plt.subplots(figsize=(max(8, 0.9 * len(table.columns) + 3), 0.55 * len(table) + 2))
    # colour on a log scale, centred on 1.0, so 2x slower and 2x faster look equally strong
    log2 = np.log2(table)
    limit = max(1.0, float(np.nanmax(np.abs(log2.values))))
    sns.heatmap(log2, annot=table, fmt=".2f", cmap="RdYlGn_r", center=0, vmin=-limit, vmax=limit, ax=ax,
                cbar_kws={"label": "step time / baseline's (< 1 is faster)", "format": FuncFormatter(lambda v, _: f"{2**v:.2g}")})
    ax.set(xlabel="measured steps (window)", ylabel="technique", title=title(df, "Step time relative to baseline, per window of steps"))
    return _save(fig, path)


def plot_speedups(speedup, df, path):
    not_run = df[df["status"] != "ok"].drop_duplicates("technique", keep="last").set_index("technique")
    not_run = not_run.drop(index=[t for t in not_run.index if t in speedup.index])
    labels = list(speedup.index) + list(not_run.index)
    fig, ax = plt.subplots(figsize=(10, 0.5 * len(labels) + 2))
    colors = ["gray" if name == BASELINE else "#2a9d8f" if s >= 1 else "#e76f51" for name, s in speedup.items()]
    ax.barh(range(len(speedup)), speedup.values, color=colors)
    for i, value in enumerate(speedup.values):
        ax.text(value, i, f" {value:.2f}×", va="center")
    for i, (name, row) in enumerate(not_run.iterrows(), start=len(speedup)):
        reason = textwrap.shorten(f"{row['status']}: {row['reason']}", width=110)
        ax.text(0.02, i, reason, va="center", fontsize=8, color="dimgray")
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(len(labels) - 0.4, -0.6)  # top to bottom, as run
    ax.set_xlim(0, max(1.0, speedup.max()) * 1.18)
    ax.set(xlabel="speedup vs baseline (mean baseline step time / mean step time, ×)", ylabel="technique", title=title(df, "Mean speedup vs baseline"))
    return _save(fig, path)


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def make_plots(results_file, out_dir, prefix=""):
    """Write the plots; return (paths written, notes for the user)."""
    df, note = latest_config(results.read(results_file))
    notes = [note] if note else []
    if measured(df).empty:
        raise results.ResultsFileError(f"{results_file} holds no successful measured steps for its newest configuration")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [plot_lines(df, out / f"{prefix}steptime_lines.png")]
    speedup, table = speedups(df), relative_windows(df)
    if speedup is None:
        notes.append("no ok baseline run in this configuration, so no heatmap or speedup bars: run make baseline")
    else:
        paths += [plot_heatmap(table, df, out / f"{prefix}relative_heatmap.png"), plot_speedups(speedup, df, out / f"{prefix}speedup_bars.png")]
    return paths, notes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", default="results.csv")
    parser.add_argument("--out", default="plots")
    parser.add_argument("--prefix", default="")
    args = parser.parse_args(argv)
    try:
        paths, notes = make_plots(args.results, args.out, args.prefix)
    except results.ResultsFileError as err:
        print(f"plots: error: {err}", file=sys.stderr)
        return 2
    for line in [*notes, *(f"wrote {p}" for p in paths)]:
        print(f"plots: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
