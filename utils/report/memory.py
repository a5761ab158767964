"""The report's memory section (reads results.csv rows only).

- breakdown per technique (measured: the MemTracker step of each run; predicted: make plan),
  memory saved vs the baseline, a predicted peak beside the measured CUDA peak of the same
  configuration with the error, allocator retries flagged;
- the largest batch per technique (make maxbatch rows);
- what fits in BUDGET_GB, from measured or predicted peaks;
- a stacked bar of the breakdown per technique (utils/plots/memory.py).
"""

import os

import pandas as pd

from utils.analysis.stats import BASELINE, measured
from utils.plots.memory import plot_breakdown
from utils.results import MEMORY_COLUMNS as COLUMNS
from utils.results import MEMORY_PARTS as PARTS

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
