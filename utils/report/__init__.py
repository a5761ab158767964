"""Report: `make report` writes REPORT.md, a table per configuration you can paste, with the plots.

For each configuration in results.csv (device, model, layers, batch, seq, data, processes;
newest first, or only devices matching DEVICE_FILTER): the environment, then one row per
technique with median and mean step time (95% bootstrap CI), tokens/s, TFLOP/s, MFU, peak
memory, speedup vs baseline with its CI, memory saved, final loss and status. The best value
of each column is bold. Closing lines recommend the fastest technique, the leanest and the
fastest within BUDGET_GIB; then the learning and memory sections.

Job: markdown from results.csv rows. May import: utils.analysis, utils.plots, utils.results,
utils.checks, utils.settings; never torch, so a CSV from another machine reports anywhere.
"""

from pathlib import Path

import pandas as pd

from utils import checks, devices, results
from utils.analysis import convergence, stats
from utils.analysis.configs import configurations
from utils.catalog import AA_CHECK
from utils.plots import plots_for
from utils.report import memory, predicted
from utils.report.tables import image, recommendation, table


def environment(df):
    row = df.iloc[-1]
    shas = ", ".join(dict.fromkeys(str(sha) for sha in df["git_sha"].dropna())) or "unknown"
    first, last = df["timestamp_utc"].min(), df["timestamp_utc"].max()
    cuda = f"driver {row['driver']}, CUDA {row['cuda']}" if row["driver"] == row["driver"] else "no CUDA"
    host = f" on {row['host']}" if row["host"] == row["host"] else ""  # blank in files older than the column
    return f"{row['device']}{host} · {cuda} · torch {row['torch']} · suite {shas} · runs {first} to {last}"


def with_peak(df, peak_tflops):
    """`df` with PEAK_TFLOPS the peak of each measured row whose device (at its precision) has none in the table,
    every other row's MFU as it ran; and the header's sentence on the devices it was applied to ('' if not given)."""
    if not peak_tflops:
        return df, ""
    here = df["kind"].fillna("measured") == "measured"  # a plan's MFU is against its GPU's peak
    keys = list(zip(df["device"].fillna(""), df["dtype"].fillna("")))
    tabled = {key: devices.peak_tflops(*key) is not None for key in set(keys)}  # a regex per device, not per row
    unknown = here & pd.Series([not tabled[key] for key in keys], index=df.index)
    df = df.copy()
    df.loc[unknown, "peak_tflops"] = peak_tflops
    df.loc[unknown, "mfu"] = df.loc[unknown, "tflops"] / peak_tflops
    applied = ", ".join(dict.fromkeys(df.loc[unknown & df["tflops"].notna(), "device"]))
    if not applied:
        return df, f" `PEAK_TFLOPS={peak_tflops:g}` was not applied: every measured device has a peak in the table."
    return df, (f" `PEAK_TFLOPS={peak_tflops:g}` is the peak of the measured rows of {applied}: the table has none "
                "for that device at the precision that ran; every other row's MFU is against the table's.")


def build(
    results_file, out, plots_dir, prefix="", device_filter="", budget_gib=None, peak_tflops=None, target_loss=None
):
    """Write the report; return its markdown."""
    df = results.read(results_file)
    convergence.check_target(df, target_loss)
    if device_filter:  # the memory and predicted sections show the same devices as the tables
        df = df[df["device"].str.contains(device_filter, case=False, regex=False, na=False)]
    df, given_peak = with_peak(df, peak_tflops)
    configs = configurations(df, device_filter)
    memory_section = memory.section(df, plots_dir, out, prefix, budget_gib)
    predicted_section = predicted.section(df)
    if not configs and not memory_section and not predicted_section:
        raise results.ResultsFileError(
            f"{results_file} has no runs" + (f" on a device matching {device_filter!r}" if device_filter else "")
        )
    out = Path(out)
    sections = [
        f"# Training optimizations: results\n\nFrom `{results_file}`; {len(configs)} configuration(s). "
        "Step times are of measured steps only "
        f"(warm-up excluded); CIs are 95% bootstrap intervals ({stats.RESAMPLES} resamples, runs then steps). "
        "A speedup whose CI holds 1.0 is reported as no detectable difference, one whose CI reaches into the "
        f"noise floor (how far `{AA_CHECK}`, an A/A copy of the baseline, lands from 1.0) as within "
        "the noise floor. MFU is against the dense peak of the precision "
        "that ran (blank where the device is not in the table; `PEAK_TFLOPS=` sets one). Best of each column in bold."
        + given_peak
    ]
    for name, rows, pooled in configs:
        summary = stats.summary(rows)
        config_prefix = prefix + (f"{checks.file_part(name)}_" if len(configs) > 1 else "")
        paths, notes = plots_for(rows, plots_dir, config_prefix) if len(stats.measured(rows)) else ([], [])
        images = "\n".join(image(p.stem, p, out) for p in paths)
        learning = convergence.section(rows, summary, target_loss)
        sections.append(
            f"## {name}\n\n{environment(rows)}\n\n{table(summary)}\n\n{recommendation(summary, budget_gib)}\n\n"
            + (f"{learning}\n\n" if learning else "")
            + "\n".join(f"_{n}_" for n in [*pooled, *notes])
            + f"\n\n{images}"
        )
    sections += [s for s in (memory_section, predicted_section) if s]
    text = "\n\n".join(sections) + "\n"
    out.write_text(text)
    return text


