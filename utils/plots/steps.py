"""Step-time charts of one configuration: lines, box plot, bootstrap means, heatmap against
the baseline, speedup bars with CIs, and the time-difference histogram of make compare."""

import textwrap

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter, ScalarFormatter  # noqa: E402

from utils.analysis import stats  # noqa: E402
from utils.analysis.stats import measured  # noqa: E402
from utils.catalog import AA_CHECK, BASELINE, STEP_PARTS  # noqa: E402
from utils.results import ResultsFileError  # noqa: E402

WIDE = 10  # above this max/min ratio of step times, time axes are logarithmic


def technique_order(df):
    names = list(dict.fromkeys(df["technique"]))
    return sorted(names, key=lambda name: name != BASELINE)  # baseline first, then as run


def measured_order(df):
    ran = set(measured(df)["technique"])
    return [t for t in technique_order(df) if t in ran]


def relative_windows(df, windows=10):
    """Median time per BATCH x SEQ tokens (a step over its accumulated micro-batches, as a speedup compares)
    per (technique, step window), divided by the baseline's."""
    rows = measured(df).copy()
    size = max(1, -(-int(rows["step"].max() + 1) // windows))  # ceil: at most `windows` windows
    rows["window"] = (rows["step"].astype(int) // size) * size
    rows["micro_batch_ms"] = stats.micro_batch_ms(rows)
    table = rows.pivot_table(index="technique", columns="window", values="micro_batch_ms", aggfunc="median")
    if BASELINE not in table.index:
        return None
    table.columns = [f"{start}-{start + size - 1}" for start in table.columns]
    return (table / table.loc[BASELINE]).reindex(measured_order(df))


def title(df, what):
    row = df.iloc[-1]
    params = f", {row['n_params'] / 1e6:.1f}M params" if row["n_params"] == row["n_params"] else ""
    runs = df.groupby("technique")["run_id"].nunique().max()
    shape = f"B={row['batch']} T={row['seq']} · {row['data']}"
    return f"{what}\n{row['device']} · {row['model']}{params} · {shape} · up to {runs} run(s) each"


def _log_if_wide(ax, values, axis="y"):
    if values.max() / values.min() > WIDE:  # one slow technique would flatten the rest
        getattr(ax, f"set_{axis}scale")("log")
        getattr(ax, f"{axis}axis").set_major_formatter(ScalarFormatter())


def plot_lines(df, path):
    fig, ax = plt.subplots(figsize=(10, 5.5))
    sns.lineplot(
        data=measured(df),
        x="step",
        y="step_ms",
        hue="technique",
        hue_order=measured_order(df),
        estimator="median",
        errorbar=("pi", 50),
        ax=ax,
    )
    _log_if_wide(ax, measured(df)["step_ms"])
    ax.set(xlabel="measured step (warm-up excluded)", ylabel="step time (ms)", title=title(df, "Step time per step"))
    ax.legend(title="technique", bbox_to_anchor=(1.01, 1), loc="upper left")
    return _save(fig, path)


def plot_heatmap(table, df, path):
    fig, ax = plt.subplots(figsize=(max(8, 0.9 * len(table.columns) + 3), 0.55 * len(table) + 2))
    # colour on a log scale, centred on 1.0, so 2x slower and 2x faster look equally strong
    log2 = np.log2(table)
    limit = max(1.0, float(np.nanmax(np.abs(log2.values))))
    sns.heatmap(
        log2,
        annot=table,
        fmt=".2f",
        cmap="RdYlGn_r",
        center=0,
        vmin=-limit,
        vmax=limit,
        ax=ax,
        cbar_kws={
            "label": "step time / baseline's (< 1 is faster)",
            "format": FuncFormatter(lambda v, _: f"{2**v:.2g}"),
        },
    )
    ax.set(
        xlabel="measured steps (window)",
        ylabel="technique",
        title=title(df, "Step time relative to baseline, per window of steps"),
    )
    return _save(fig, path)


COLORS = {"faster": "#2a9d8f", "slower": "#e76f51"}  # any other verdict: grey, nothing shown


def _label_bars(ax, ran, one_run, partly_failed):
    """Each bar's speedup and CI at its whisker's end, with what keeps it from being shown."""
    for i, (_, row) in enumerate(ran.iterrows()):
        note = "" if row["verdict"] in ("faster", "slower", "baseline") else f"  ({row['verdict']})"
        note += "  (one run)" if one_run[i] and row["verdict"] in ("faster", "slower") else ""
        note = f"  ({row['failures']}: not compared)" if partly_failed[i] else note
        ci = f"[{row['speedup_lo']:.2f}, {row['speedup_hi']:.2f}]"
        ax.text(row["speedup_hi"], i, f" {row['speedup']:.2f}× {ci}{note}", va="center", fontsize=9)


def plot_speedups(summary, df, path):
    """Bars of the speedup with 95% bootstrap CI whiskers, hatched where a CI rests on one
    run, grey where some runs failed (the report compares neither); the noise floor as a band;
    techniques that did not run listed with the reason."""
    ran = summary[summary["speedup"].notna()]
    not_run = summary.drop(index=ran.index)
    labels = list(ran.index) + list(not_run.index)
    fig, ax = plt.subplots(figsize=(10, 0.5 * len(labels) + 2))
    one_run = (ran["one_run"] == True).tolist()  # noqa: E712 - blank is not True
    # where some repeats failed the figures are the survivors': the report's rule, neither best nor recommended
    partly_failed = (~stats.every_run_ok(ran)).tolist()
    errors = [ran["speedup"] - ran["speedup_lo"], ran["speedup_hi"] - ran["speedup"]]
    ax.barh(
        range(len(ran)),
        ran["speedup"],
        xerr=errors,
        color=["gray" if failed else COLORS.get(v, "gray") for v, failed in zip(ran["verdict"], partly_failed)],
        capsize=3,
        hatch=["//" if one else "" for one in one_run],
        edgecolor="white",
    )
    _label_bars(ax, ran, one_run, partly_failed)
    for i, (_, row) in enumerate(not_run.iterrows(), start=len(ran)):
        ax.text(
            0.02,
            i,
            textwrap.shorten(f"{row['status']}: {row['reason']}", width=110),
            va="center",
            fontsize=8,
            color="dimgray",
        )
    ax.axvline(1.0, color="black", linewidth=1)
    legend = []
    floor = stats.aa_floor(summary)
    if floor:
        label = f"noise floor: {AA_CHECK} (A/A) off by {floor[0]:.1%}; within it: not shown"
        legend.append(ax.axvspan(1 / (1 + floor[0]), 1 + floor[0], color="gold", alpha=0.3, label=label))
    if any(one_run):
        label = "one run: CI of step-to-step noise only"
        legend.append(Patch(facecolor="gray", hatch="//", edgecolor="white", label=label))
    if legend:
        ax.legend(handles=legend, loc="lower right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(len(labels) - 0.4, -0.6)  # top to bottom, as in the report
    ax.set_xlim(0, max(1.0, ran["speedup_hi"].max() if len(ran) else 1.0) * 1.45)
    ax.set(
        xlabel="speedup vs baseline: mean baseline step time / mean step time (×), 95% bootstrap CI",
        ylabel="technique",
        title=title(df, "Mean speedup vs baseline"),
    )
    return _save(fig, path)


def timed(df, part):
    """`part` of the step's column and name (catalog.STEP_PARTS), the measured rows that time it (CUDA graphs time
    only the whole step), and their techniques in order; raises ResultsFileError where none does."""
    column, name = STEP_PARTS[part]
    rows = measured(df).dropna(subset=[column])
    if rows.empty:
        raise ResultsFileError(f"no measured step records its {name} ({column}) in this configuration")
    return column, name, rows, [t for t in measured_order(df) if t in set(rows["technique"])]


def plot_box(df, path, part="step"):
    column, name, rows, order = timed(df, part)
    fig, ax = plt.subplots(figsize=(10, 0.5 * len(order) + 2))
    sns.boxplot(data=rows, x=column, y="technique", order=order, hue="technique", legend=False, fliersize=2, ax=ax)
    _log_if_wide(ax, rows[column], axis="x")
    ax.set(xlabel=f"{name} (ms)", ylabel="technique", title=title(df, f"Distribution of the {name}"))
    return _save(fig, path)


def plot_bootstrap(df, path, part="step"):
    """Bootstrap distributions of each technique's mean step time (or `part`'s), overlaid."""
    column, name, rows, order = timed(df, part)
    draws = pd.concat([pd.DataFrame({"technique": t, "mean_ms": stats.bootstrap(stats.runs_of(rows, t, column=column))})
                       for t in order])
    wide = bool(draws["mean_ms"].max() / draws["mean_ms"].min() > WIDE)  # seaborn wants a real bool
    fig, ax = plt.subplots(figsize=(10, 5.5))
    sns.histplot(data=draws, x="mean_ms", hue="technique", element="step", bins=120, log_scale=wide, alpha=0.4, ax=ax)
    ax.set(
        xlabel=f"mean {name} (ms), bootstrap resamples",
        ylabel=f"count of {stats.RESAMPLES} resamples",
        title=title(df, f"Bootstrap distributions of the mean {name}"),
    )
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1))
    return _save(fig, path)


# the report's one-run rule (†): a CI over one process's steps sees no variation between processes
ONE_RUN_EACH = "one run each: step-to-step noise only, not shown"


def difference_verdict(a, b, mean, low, high, runs):
    """What a - b's CI over `runs` paired runs shows: which is faster, no detectable difference, or nothing
    where one run of each is paired."""
    if runs < 2:
        return ONE_RUN_EACH
    return "no detectable difference" if low <= 0 <= high else f"{a if mean < 0 else b} is faster"


def plot_time_difference(df, a, b, path, part="step"):
    """Histogram of step time (or `part`'s) a - b, paired by (run, step): the coin-flip study's SGD - Adam plot
    (PART=optimizer: its optimizer step). Returns (path, mean, CI low, CI high, verdict)."""
    column, name = STEP_PARTS[part]
    diffs = stats.time_differences(df, a, b, column)
    if not len(diffs):
        raise ResultsFileError(f"no measured steps of both {a} and {b} with a {name} ({column}) in this "
                               f"configuration: run make {a} {b}")
    by_run = [group.to_numpy() for _, group in diffs.groupby(level="run")]
    low, high = stats.interval(stats.bootstrap(by_run))
    verdict = difference_verdict(a, b, diffs.mean(), low, high, len(by_run))
    fig, ax = plt.subplots(figsize=(9, 5))
    ax.hist(diffs, bins=40, color="#457b9d")
    ax.axvline(0, color="black", linewidth=1)
    ax.axvline(
        diffs.mean(),
        color="#e63946",
        linewidth=2,
        label=f"mean {diffs.mean():+.3f} ms, 95% CI [{low:+.3f}, {high:+.3f}]: {verdict}",
    )
    ax.set(
        xlabel=f"{name} {a} − {b} (ms); < 0: {a} is faster",
        ylabel="steps",
        title=title(df, f"{name.capitalize()} difference, {a} − {b}"),
    )
    ax.legend()
    return _save(fig, path), diffs.mean(), low, high, verdict


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
