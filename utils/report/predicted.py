"""The report's predicted step times (make plan's rows with a roofline time), in their own
section: per GPU they were predicted for, never bolded, ranked or recommended against a
measured figure. Beside each, the measured median of the same technique and shape on a device
of that name, where the file has one, and the error."""

import pandas as pd

from utils.analysis.configs import STEP_ALIKE, alike, with_world
from utils.analysis.stats import measured, predicted
from utils.devices import gpu_name
from utils.report.memory import planned_fit, planned_gpu
from utils.units import MIB_PER_GIB

# a plan of N GPUs is not of one, nor a plan at ACCUM=4 of a run at 8 (the data changes no step's time)
KEY = ["technique", "model", "layers", "batch", "seq", "parallel", "world_size", *STEP_ALIKE]


def section(df):
    """Markdown, or "" when no predicted row carries a time."""
    if "step_ms" not in df:
        return ""
    rows = with_world(df[predicted(df) & df["step_ms"].notna()])
    if rows.empty:
        return ""
    rows["gpu"] = rows["device"].map(planned_gpu)
    ran = with_world(measured(df))
    ran_on = ran["device"].map(gpu_name)
    lines = []
    for gpu, group in rows.groupby("gpu", sort=False):
        newest = group.groupby(KEY, sort=False, dropna=False).tail(1)  # a blank setting is a value too
        lines += [f"### Predicted for {gpu}, not measured", "",
                  "| technique | model | layers | B | T | GPUs | fits | step ms | forward | backward | optimizer "
                  "| tokens/s | MFU | measured here (median ms) | error |", "|" + "---|" * 15]
        for _, row in newest.iterrows():
            same = ran[alike(ran, row, KEY) & (ran_on == gpu)]
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
