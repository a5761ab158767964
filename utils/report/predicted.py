"""The report's predicted step times (make plan's rows with a roofline time), in their own
section: per GPU they were predicted for, never bolded, ranked or recommended against a
measured figure. Beside each, the measured median of the same technique and shape on a device
of that name, where the file has one, and the error."""

import pandas as pd

from utils.analysis.stats import measured, predicted
from utils.devices import by_name
from utils.report.memory import planned_fit, planned_gpu
from utils.units import MIB_PER_GIB

KEY = ["technique", "model", "layers", "batch", "seq", "parallel", "world_size"]  # a plan of N GPUs is not of one


def _keyed(rows):
    """`rows` with one process's blank parallel columns filled, so that a plan and a run of one compare."""
    return rows.assign(parallel=rows["parallel"].astype(object).fillna("none"),
                       world_size=rows["world_size"].fillna(1).astype(int))


def section(df):
    """Markdown, or "" when no predicted row carries a time."""
    if "step_ms" not in df:
        return ""
    rows = _keyed(df[predicted(df) & df["step_ms"].notna()])
    if rows.empty:
        return ""
    rows["gpu"] = rows["device"].map(planned_gpu)
    ran = _keyed(measured(df))
    lines = []
    for gpu, group in rows.groupby("gpu", sort=False):
        newest = group.groupby(KEY, sort=False).tail(1)
        lines += [f"### Predicted for {gpu}, not measured", "",
                  "| technique | model | layers | B | T | GPUs | fits | step ms | forward | backward | optimizer "
                  "| tokens/s | MFU | measured here (median ms) | error |", "|" + "---|" * 15]
        for _, row in newest.iterrows():
            here = ran["device"].map(lambda d: getattr(by_name(d), "name", None)) == gpu
            same = ran[(ran[KEY] == row[KEY]).all(axis=1) & here]
            truth = same["step_ms"].median() if len(same) else float("nan")
            error = f"{row['step_ms'] / truth - 1:+.1%}" if truth == truth else "–"
            mfu = f"{row['mfu']:.1%}" if pd.notna(row.get("mfu")) else "–"
            gpus = "1" if row["parallel"] == "none" else f"{row['world_size']} ({row['parallel']})"
            fit = {True: "yes", False: f"no ({row['device_total_mib'] / MIB_PER_GIB:,.2f} GiB)", None: "–"}
            lines.append(f"| `{row['technique']}` | {row['model']} | {row['layers']} | {row['batch']} | {row['seq']} | "
                         f"{gpus} | {fit[planned_fit(row)]} | "
                         f"{row['step_ms']:.1f} | {row['forward_ms']:.1f} | {row['backward_ms']:.1f} | "
                         f"{row['optimizer_ms']:.1f} | {row['tokens_per_s']:,.0f} | {mfu} | "
                         f"{'–' if truth != truth else f'{truth:.1f}'} | {error} |")
        lines.append("")
    intro = ("## Predicted step time (`make plan GPU=...`)\n\nA roofline over the planned step's own ops on the "
             "GPU's datasheet peaks and declared efficiencies (utils/plan/timing.py): predicted, not measured, and "
             "never compared for bold or a recommendation with the measured rows above; fits: the predicted device "
             "total (what nvidia-smi would show) within the GPU's memory, else what it would need. Its measured "
             "error on the reference rows is in docs/plan_check.md (`make plan_check`).")
    return intro + "\n\n" + "\n".join(lines).rstrip()
