"""The report's memory section and the memory plots (reads results.csv rows only).

- breakdown per technique (measured: the MemTracker step of each run; predicted: make plan),
  memory saved vs the baseline, a predicted peak beside the measured CUDA peak of the same
  configuration with the error, allocator retries flagged;
- the largest batch per technique (make maxbatch rows);
- what fits in BUDGET_GB, from measured or predicted peaks;
- plots: a stacked bar of the breakdown per technique, and the scaling plots (peak memory and
  tokens/s against parameter count, measured solid, predicted hollow and dashed).
"""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from utils.memory import COLUMNS, PARTS  # noqa: E402
from utils.stats import BASELINE, measured, predicted  # noqa: E402

GIB = 1024
KEY = ["model", "batch", "seq"]


def breakdowns(df):
    """One row per (kind, model, batch, seq, technique): the newest breakdown, with the measured
    CUDA peak allocated and the allocator's retries where the run recorded them."""
    if "mem_peak_mib" not in df:
        return pd.DataFrame()
    rows = df[df["mem_peak_mib"].notna() & (df["status"] == "ok")].copy()
    rows["kind"] = rows["kind"].fillna("measured")
    out = []
    for (kind, *key, technique), group in rows.groupby(["kind", *KEY, "technique"], sort=False):
        last = group[group["run_id"] == group["run_id"].iloc[-1]]
        ran = measured(last)
        out.append({"kind": kind, **dict(zip(KEY, key)), "technique": technique, "device": last["device"].iloc[0],
                    **{c: last[c].iloc[0] for c in COLUMNS},
                    "cuda_peak_mib": ran["peak_alloc_mib"].max() if len(ran) else float("nan"),
                    "alloc_retries": last["alloc_retries"].max()})
    return pd.DataFrame(out)


def _mib(v):
    return "–" if v != v else f"{v:,.0f}"


def breakdown_table(table):
    lines = ["| technique | kind | peak MiB | " + " | ".join(PARTS) + " | saved vs baseline MiB | measured CUDA peak "
             "MiB | predicted vs measured | allocator |", "|" + "---|" * (len(PARTS) + 7)]
    base = table[table["technique"] == BASELINE].set_index("kind")["mem_peak_mib"]
    measured_peaks = table[table["kind"] == "measured"].set_index("technique")["cuda_peak_mib"]
    for _, row in table.iterrows():
        saved = base.get(row["kind"], float("nan")) - row["mem_peak_mib"]
        cuda = row["cuda_peak_mib"] if row["kind"] == "measured" else measured_peaks.get(row["technique"], float("nan"))
        error = f"{row['mem_peak_mib'] / cuda - 1:+.1%}" if row["kind"] == "predicted" and cuda == cuda else "–"
        retries = row["alloc_retries"]
        flagged = retries == retries and retries > 0
        flag = f"**{int(retries)} retries: step times include cache flushes**" if flagged else "–"
        parts = " | ".join(_mib(row[f"mem_{p}_mib"]) for p in PARTS)
        lines.append(f"| `{row['technique']}` | {row['kind']} | {_mib(row['mem_peak_mib'])} | {parts} | "
                     f"{'–' if saved != saved else f'{saved:+,.0f}'} | {_mib(cuda)} | {error} | {flag} |")
    return "\n".join(lines)


def plot_breakdown(table, title, path):
    labels = [f"{t}{' (predicted)' if k == 'predicted' else ''}" for t, k in zip(table["technique"], table["kind"])]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(table) + 2))
    left = pd.Series(0.0, index=table.index)
    for part in PARTS:
        values = table[f"mem_{part}_mib"].fillna(0) / GIB
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


def plot_scaling(df, techniques, batch, seq, path):
    """Peak memory and tokens/s against parameter count per technique; measured solid,
    predicted (make plan) hollow and dashed. Returns the path, or None with nothing to draw."""
    rows = df[(df["batch"] == batch) & (df["seq"] == seq) & df["technique"].isin(techniques)]
    ran = measured(rows)
    fig, (ax_mem, ax_tok) = plt.subplots(1, 2, figsize=(13, 5))
    drawn = False
    for i, technique in enumerate(techniques):
        color = f"C{i}"
        mine = ran[ran["technique"] == technique]
        if len(mine):
            per_model = mine.groupby("n_params").agg(tokens=("tokens_per_s", "median"), alloc=("peak_alloc_mib", "max"),
                                                    tracked=("mem_peak_mib", "max"))
            memory = per_model["alloc"].fillna(per_model["tracked"]) / GIB
            ax_mem.plot(per_model.index, memory, "o-", color=color, label=f"{technique} measured")
            ax_tok.plot(per_model.index, per_model["tokens"], "o-", color=color, label=f"{technique} measured")
            drawn = True
        planned = rows[predicted(rows) & (rows["technique"] == technique)].groupby("n_params")["mem_peak_mib"].last()
        if len(planned):
            ax_mem.plot(planned.index, planned / GIB, "o--", mfc="none", color=color, label=f"{technique} predicted")
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    for ax, label in ((ax_mem, "peak memory (GiB)"), (ax_tok, "tokens/s (measured only)")):
        ax.set(xscale="log", yscale="log", xlabel="parameters", ylabel=label)
        ax.legend(fontsize=8)
    fig.suptitle(f"Scaling with model size, B={batch} T={seq} (predicted: CUDA peak allocated from make plan)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def largest_batches(df):
    rows = df[df["phase"] == "maxbatch"]
    if rows.empty:
        return ""
    newest = rows.groupby(["technique", "model", "seq", "kind"], sort=False).tail(1)
    lines = ["| technique | model | T | largest batch | how |", "|---|---|---|---|---|"]
    lines += [f"| `{r['technique']}` | {r['model']} | {r['seq']} | {int(r['batch'])} | {r['reason']} |"
              for _, r in newest.iterrows()]
    return "### Largest batch per technique (`make maxbatch`)\n\n" + "\n".join(lines)


def fits(table, budget_gb):
    if budget_gb is None or table.empty:
        return ""
    within = table[table["mem_peak_mib"] <= budget_gb * GIB].sort_values("mem_peak_mib")
    names = ", ".join(f"`{r['technique']}` ({r['kind']}, {r['mem_peak_mib'] / GIB:.2f} GiB)"
                      for _, r in within.iterrows())
    return f"- **What fits in {budget_gb:g} GiB:** " + (names or "nothing measured or predicted here")


def section(df, plots_dir, out, prefix="", budget_gb=None):
    """The markdown memory section (empty when the file has no memory rows)."""
    table = breakdowns(df)
    parts = []
    for key, group in (table.groupby(KEY, sort=False) if not table.empty else []):
        title = "{} · B={} T={}".format(*key)
        os.makedirs(plots_dir, exist_ok=True)
        path = plot_breakdown(group.reset_index(drop=True), f"Memory breakdown: {title}",
                              os.path.join(plots_dir, f"{prefix}memory_{key[0]}_b{key[1]}_t{key[2]}.png"))
        image = f"![memory breakdown]({os.path.relpath(path, os.path.dirname(os.path.abspath(out)))})"
        parts.append(f"### {title}\n\n{breakdown_table(group)}\n\n{fits(group, budget_gb)}\n\n{image}")
    batches = largest_batches(df)
    if not parts and not batches:
        return ""
    intro = ("## Memory\n\nMeasured: one extra, untimed step under MemTracker after the measured phase; predicted: "
             "`make plan` (fake tensors, CUDA modelled), never in step-time statistics. Parts are at the step's peak.")
    return "\n\n".join([intro, *parts, batches])
