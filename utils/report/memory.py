"""The report's memory section (reads results.csv rows only).

- breakdown per technique (measured: the MemTracker step of each run; predicted: make plan),
  memory saved vs the baseline, the three CUDA figures (peak allocated, peak reserved, device
  total: measured, or predicted for the GPU named in the row), a predicted figure beside the
  measured one of the same configuration with the error, allocator retries flagged, a predicted row whose
  device total passes its GPU's memory said not to fit;
- the largest batch per technique (make maxbatch rows);
- what fits in BUDGET_GIB, from measured or predicted peaks;
- a stacked bar of the breakdown per technique (utils/plots/memory.py).
"""

import os

import pandas as pd

from utils import checks
from utils.analysis.configs import STEP_ALIKE, alike, with_world
from utils.analysis.stats import measured
from utils.catalog import BASELINE
from utils.devices import gpu_name, memory_gib_of
from utils.plots.memory import plot_breakdown
from utils.report.tables import image
from utils.results import MEMORY_COLUMNS as COLUMNS
from utils.results import MEMORY_PARTS as PARTS
from utils.units import MIB_PER_GIB

# a section each (a plan of rank 0 of N GPUs is not of one); a row per kind, device and technique
KEY = ["model", "layers", "batch", "seq", "parallel", "world_size"]
# the CUDA figures a row may carry: the report's name -> results.csv's column
CUDA = {"cuda_alloc_mib": "peak_alloc_mib", "cuda_reserved_mib": "peak_reserved_mib",
        "device_total_mib": "device_total_mib"}


def breakdowns(df):
    """One row per (kind, model, layers, batch, seq, device, technique): the newest breakdown, with the CUDA
    figures (measured, or predicted for a GPU) and the allocator's retries where the run recorded them."""
    if "mem_peak_mib" not in df:
        return pd.DataFrame()
    rows = with_world(df[df["mem_peak_mib"].notna() & (df["status"] == "ok")])
    rows["kind"] = rows["kind"].fillna("measured")
    out = []
    for (kind, *key, device, technique), group in rows.groupby(["kind", *KEY, "device", "technique"], sort=False,
                                                               dropna=False):
        last = group[group["run_id"] == group["run_id"].iloc[-1]]
        source = last if kind == "predicted" else measured(last)  # a predicted row carries its own CUDA figures
        cuda = {name: source[column].max() if column in source and len(source) else float("nan")
                for name, column in CUDA.items()}
        out.append({"kind": kind, **dict(zip(KEY, key)), "technique": technique, "device": device,
                    **{c: last[c].iloc[0] for c in (*COLUMNS, *STEP_ALIKE)}, **cuda,
                    "alloc_retries": last["alloc_retries"].max()})
    return pd.DataFrame(out)


def _mib(v):
    return "–" if v != v else f"{v:,.0f}"


def _error(row, measured_rows, name):
    """A predicted figure against the newest measured one of the same technique and settings on a GPU of the
    planned name (`measured_rows`' gpu column): '+1.2%', or '–'."""
    if row["kind"] != "predicted":
        return "–"
    same = measured_rows[alike(measured_rows, row, ["technique", *STEP_ALIKE])
                         & (measured_rows["gpu"] == planned_gpu(row["device"]))]
    truth = same[name].iloc[-1] if len(same) else float("nan")
    return f"{row[name] / truth - 1:+.1%}" if truth == truth and row[name] == row[name] else "–"


def breakdown_table(table):
    lines = ["| technique | kind | tensor peak MiB | " + " | ".join(PARTS) + " | saved vs baseline MiB | CUDA "
             "allocated MiB | CUDA reserved MiB | device total MiB | predicted vs measured (allocated / device "
             "total) | allocator |", "|" + "---|" * (len(PARTS) + 9)]
    base = table[table["technique"] == BASELINE].set_index(["kind", "device"])["mem_peak_mib"]
    measured_rows = table[table["kind"] == "measured"]
    measured_rows = measured_rows.assign(gpu=measured_rows["device"].map(gpu_name))
    for _, row in table.iterrows():
        saved = base.get((row["kind"], row["device"]), float("nan")) - row["mem_peak_mib"]
        errors = " / ".join(_error(row, measured_rows, name) for name in ("cuda_alloc_mib", "device_total_mib"))
        retries = row["alloc_retries"]
        flagged = retries == retries and retries > 0
        flag = f"**{int(retries)} retries: step times include cache flushes**" if flagged else "–"
        if flagged and row["kind"] == "predicted":
            flag = f"{int(retries)} retries predicted (the cache flushed near the GPU's capacity)"
        parts = " | ".join(_mib(row[f"mem_{p}_mib"]) for p in PARTS)
        cuda = " | ".join(_mib(row[name]) for name in CUDA)
        lines.append(f"| `{row['technique']}` | {_kind(row)} | {_mib(row['mem_peak_mib'])} | {parts} | "
                     f"{'–' if saved != saved else f'{saved:+,.0f}'} | {cuda} | {errors} | {flag} |")
    return "\n".join(lines)


def planned_gpu(device):
    """The GPU a predicted row's device names (utils/plan/config.py's planned_device: the GPU, then the
    planning machine in brackets)."""
    return str(device).split(" (planned on")[0]


def planned_fit(row):
    """Whether a predicted row's device total is within its GPU's memory (as `make plan`'s fits column
    said), or None where the row has no device total or names no GPU of the table."""
    return fits_in(row.get("device_total_mib", float("nan")), memory_gib_of(planned_gpu(row["device"])))


def fits_in(total_mib, capacity_gib):
    """Whether a device total is within a GPU's memory, or None where either is unknown."""
    return None if capacity_gib is None or total_mib != total_mib else bool(total_mib <= capacity_gib * MIB_PER_GIB)


def _kind(row):
    if row["kind"] != "predicted":
        return row["kind"]
    gpu = planned_gpu(row["device"])
    said = f"predicted for {gpu}" if gpu and not gpu.startswith("CUDA GPU") else "predicted"
    return said + (", **does not fit**" if planned_fit(row) is False else "")


def largest_batches(df):
    rows = df[df["phase"] == "maxbatch"]
    if rows.empty:
        return ""
    newest = rows.groupby(["technique", "model", "seq", "kind", "device"], sort=False, dropna=False).tail(1)
    lines = ["| technique | model | T | device | largest batch | how |", "|---|---|---|---|---|---|"]
    lines += [f"| `{r['technique']}` | {r['model']} | {r['seq']} | {r['device']} | {int(r['batch'])} | {r['reason']} |"
              for _, r in newest.iterrows()]
    return "### Largest batch per technique (`make maxbatch`)\n\n" + "\n".join(lines)


def _fit_figure(row):
    """(MiB, which) a budget is judged on: the device total where known (what the GPU holds),
    else CUDA's peak allocated, else the tracked tensor peak."""
    for name, label in (("device_total_mib", "device total"), ("cuda_alloc_mib", "allocated"),
                        ("mem_peak_mib", "tensor peak")):
        if row[name] == row[name]:
            return row[name], label
    return float("nan"), ""


def fits(table, budget_gib):
    if budget_gib is None or table.empty:
        return ""
    figures = [(_fit_figure(row), row) for _, row in table.iterrows()]
    within = sorted((item for item in figures if item[0][0] <= budget_gib * MIB_PER_GIB), key=lambda item: item[0][0])
    names = ", ".join(f"`{r['technique']}` ({_kind(r)}, {mib / MIB_PER_GIB:.2f} GiB {label})"
                      for (mib, label), r in within)
    return f"- **What fits in {budget_gib:g} GiB:** " + (names or "nothing measured or predicted here")


def section(df, plots_dir, out, prefix="", budget_gib=None):
    """The markdown memory section (empty when the file has no memory rows)."""
    table = breakdowns(df)
    parts = []
    for (model, layers, batch, seq, parallel, world), group in (table.groupby(KEY, sort=False, dropna=False)
                                                                 if not table.empty else []):
        depth = int(float(layers)) if layers == layers else None  # blank in files older than the column
        ranks = f" · rank 0 of {world} ({parallel})" if parallel != "none" else ""
        title = f"{model}{f' · {depth} layers' if depth else ''} · B={batch} T={seq}{ranks}"
        os.makedirs(plots_dir, exist_ok=True)
        name = (f"{prefix}memory_{checks.file_part(model)}{f'_l{depth}' if depth else ''}_b{batch}_t{seq}"
                f"{f'_{parallel}{world}' if ranks else ''}.png")
        path = plot_breakdown(group.reset_index(drop=True), f"Memory breakdown: {title}", os.path.join(plots_dir, name))
        parts.append(f"### {title}\n\n{breakdown_table(group)}\n\n{fits(group, budget_gib)}\n\n"
                     f"{image('memory breakdown', path, out)}")
    batches = largest_batches(df)
    if not parts and not batches:
        return ""
    intro = ("## Memory\n\nMeasured: one extra, untimed step under MemTracker after the measured phase; predicted: "
             "`make plan` (fake tensors, CUDA modelled, the caching allocator replayed), never in step-time "
             "statistics. Parts are the tensors at the step's peak; the CUDA figures are what "
             "`torch.cuda.max_memory_allocated`, `max_memory_reserved` and nvidia-smi show (device total: "
             "reserved + the CUDA context).")
    return "\n\n".join([intro, *parts, batches])
