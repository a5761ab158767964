"""Plots: `make plots` / `make compare` charts from results.csv (steps.py: step times and
speedups; curves.py: learning curves and the grid's figures; memory.py: memory breakdown and
scaling with model size; scaling.py: scaling across processes).

Job: PNG files from rows. May import: matplotlib, seaborn, pandas, utils.analysis,
utils.results, utils.checks, utils.settings; never torch, so a CSV from another machine
plots anywhere. One configuration (device, model, layers, batch, seq, data, processes) is
plotted at a time, since a speedup only means something against a baseline of the same
configuration: the newest one, or the newest whose device matches DEVICE_FILTER.
"""

from pathlib import Path

from utils import results
from utils.analysis import stats
from utils.analysis.configs import configurations
from utils.analysis.stats import measured
from utils.plots import curves
from utils.plots.steps import plot_bootstrap, plot_box, plot_heatmap, plot_lines, plot_speedups, relative_windows


def plots_for(df, out_dir, prefix="", part="step"):
    """Write the plots of one configuration, the box and bootstrap plots timing `part` of the step (a key of
    catalog.STEP_PARTS); return (paths, notes)."""
    if measured(df).empty:
        raise results.ResultsFileError("no successful measured steps in this configuration")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [
        plot_lines(df, out / f"{prefix}steptime_lines.png"),
        plot_box(df, out / f"{prefix}{part}time_box.png", part),
        plot_bootstrap(df, out / f"{prefix}bootstrap_means{part_suffix(part)}.png", part),
    ]
    paths += curves.plots_for(df, out, prefix)  # learning curves, where the runs made evaluations
    table = relative_windows(df)
    if table is None:
        return paths, ["no ok baseline run in this configuration, so no heatmap or speedup bars: run make baseline"]
    paths += [
        plot_heatmap(table, df, out / f"{prefix}relative_heatmap.png"),
        plot_speedups(stats.summary(df), df, out / f"{prefix}speedup_bars.png"),
    ]
    return paths, []


def part_suffix(part):
    """How a plot file names the part of the step it times: nothing for the whole step."""
    return "" if part == "step" else f"_{part}"


def select(results_file, device_filter=""):
    """The newest configuration's rows (matching device_filter) that has measured steps, and a
    note on the others."""
    configs = configurations(results.read(results_file), device_filter)
    matching = f" on a device matching {device_filter!r}" if device_filter else ""
    if not configs:
        raise results.ResultsFileError(f"{results_file} has no runs{matching}")
    ran = [(name, rows, pooled) for name, rows, pooled in configs if len(measured(rows))]
    if not ran:
        raise results.ResultsFileError(
            f"{results_file} has no successful measured steps{matching}: every run was skipped or failed"
        )
    others = len(configs) - 1
    notes = [f"plotting {ran[0][0]}; {others} other configuration(s) in the file are not mixed in"] if others else []
    return ran[0][1], notes + ran[0][2]
