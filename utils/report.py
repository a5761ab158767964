"""`make report`: REPORT.md, a table per configuration you can paste, with the plots.

For each configuration in results.csv (device, model, batch, seq, data; newest first, or
only devices matching DEVICE_FILTER): the environment, then one row per technique with
median and mean step time (95% bootstrap CI), tokens/s, TFLOP/s, MFU, peak memory, speedup vs
baseline with its CI, memory saved, final loss and status. The best value of each column is
bold. A closing line recommends the fastest technique, the leanest, and the fastest within
BUDGET_GB.

usage: python -m utils.report [--results F] [--out REPORT.md] [--plots-dir plots]
                              [--prefix P] [--device-filter S] [--budget-gb G] [--peak-tflops T]
"""

import argparse
import os
import re
import sys
from pathlib import Path

import numpy as np

from utils import checks, convergence, memreport, plots, results, stats

GIB = 1024  # MiB per GiB
ONE_RUN = "†"  # marks a row whose CIs rest on a single process
ONE_RUN_NOTE = (
    f"{ONE_RUN} one run: its CIs cover the noise from step to step within one process only, not the "
    "variation between processes, which is often larger; a difference is shown only across repeats "
    "(`REPEATS=3`, or `PRECISION=0.02` to repeat until the CIs are narrow)."
)
VERDICT_NOTES = {
    "no detectable difference": " (no detectable difference)",
    "within the noise floor": " (within the noise floor)",
    "A/A check": " (A/A: the noise floor)",
}


def _fmt(value, spec):
    return "–" if value is None or value != value else format(value, spec)


def _ci(value, low, high, spec):
    return "–" if value != value else f"{value:{spec}} [{low:{spec}}, {high:{spec}}]"


def _bold_best(cells, values, best, eligible=None):
    """Bold the cell(s) holding the best (min or max) of the eligible `values`; ties as
    displayed are all bold. Nothing is bold in a column with fewer than two values."""
    eligible = eligible or [True] * len(values)
    candidates = [v for v, ok in zip(values, eligible) if ok and v == v]
    if sum(v == v for v in values) < 2 or not candidates:
        return cells
    shown = cells[values.index(best(candidates))]
    return [f"**{c}**" if c == shown and ok else c for c, ok in zip(cells, eligible)]


def _memory_column(summary):
    if summary["peak_alloc_mib"].notna().any():
        return "peak alloc / reserved GiB", [
            f"{a / GIB:.2f} / {r / GIB:.2f}" if a == a else "–"
            for a, r in zip(summary["peak_alloc_mib"], summary["peak_reserved_mib"])
        ]
    return "peak RSS MiB", [_fmt(v, ".0f") for v in summary["memory_mib"]]


def table(summary):
    """The markdown table of one configuration's summary, best of each column bold."""

    def get(column):
        return summary[column].tolist() if column in summary else [np.nan] * len(summary)

    memory_title, memory_cells = _memory_column(summary)
    speed = get("speedup")
    one_run = [flag is True for flag in get("one_run")]
    # only a speedup shown across runs can be the best
    faster = [v == "faster" and not one for v, one in zip(get("verdict"), one_run)]
    speedup_cells = [
        _ci(v, lo, hi, ".2f")
        + VERDICT_NOTES.get(verdict, "")
        + (f" (one run{ONE_RUN})" if one and verdict in ("faster", "slower") else "")
        if v == v
        else "–"
        for v, lo, hi, verdict, one in zip(speed, get("speedup_lo"), get("speedup_hi"), get("verdict"), one_run)
    ]
    columns = {
        "median ms": _bold_best([_fmt(v, ".2f") for v in get("median_ms")], get("median_ms"), min),
        "mean ms [95% CI]": _bold_best(
            [_ci(v, lo, hi, ".2f") for v, lo, hi in zip(get("mean_ms"), get("mean_lo"), get("mean_hi"))],
            get("mean_ms"),
            min,
        ),
        "fwd / bwd / opt ms": [
            f"{f:.2f} / {b:.2f} / {o:.2f}" if f == f else "–"
            for f, b, o in zip(get("forward_ms"), get("backward_ms"), get("optimizer_ms"))
        ],
        "tokens/s": _bold_best([_fmt(v, ",.0f") for v in get("tokens_per_s")], get("tokens_per_s"), max),
        # the whole measured phase by the wall clock: below tokens/s when the host is the limit
        "end-to-end tokens/s": _bold_best(
            [_fmt(v, ",.0f") for v in get("wall_tokens_per_s")], get("wall_tokens_per_s"), max
        ),
        "TFLOP/s": _bold_best([_fmt(v, ".3g") for v in get("tflops")], get("tflops"), max),
        # above 100% the peak cannot be this device's: say so rather than print a wrong figure
        "MFU": _bold_best(
            [_fmt(v, ".1%") + (" (> peak: wrong PEAK_TFLOPS?)" if v > 1 else "") for v in get("mfu")], get("mfu"), max
        ),
        memory_title: _bold_best(memory_cells, get("memory_mib"), min),
        "memory saved MiB": _bold_best(
            [_fmt(v, "+,.0f") for v in get("memory_saved_mib")], get("memory_saved_mib"), max
        ),
        "speedup [95% CI]": _bold_best(speedup_cells, speed, max, faster),
        "final loss": _bold_best([_fmt(v, ".3f") for v in get("final_loss")], get("final_loss"), min),
        "warm-up s": [_fmt(v, ".1f") for v in get("warmup_s")],
    }
    ran = [what_ran(row) for _, row in summary.iterrows()]
    header = ["technique", "runs", *columns, "status", "what ran"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, technique in enumerate(summary.index):
        runs = f"{summary['runs'].iloc[i]}{ONE_RUN if one_run[i] else ''}"
        cells = [f"`{technique}`", runs, *(col[i] for col in columns.values()), summary["status"].iloc[i], ran[i]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + (f"\n\n{ONE_RUN_NOTE}" if any(one_run) else "")


def what_ran(row):
    """The row's configuration in a few words (or why it did not run)."""
    if row["status"] != "ok":
        return row["reason"]

    def on(column):
        return row.get(column) is True or row.get(column) == "True"

    words = [f"{row['dtype']}, {row['attention']}, {row['optimizer']}" + (" fused" if on("fused") else "")]
    if row.get("mlp") not in (None, "gelu") and row.get("mlp") == row.get("mlp"):
        words.append(f"{row['mlp']} MLP")
    if on("compiled"):
        mode = row.get("compile_mode")
        words.append("compiled" + (f" ({mode})" if mode == mode and mode not in (None, "default") else ""))
    if on("checkpointing"):
        words.append("ckpt")
    if row.get("accum", 1) == row.get("accum", 1) and row.get("accum", 1) > 1:
        words.append(f"accum x{int(row['accum'])}")
    if on("cuda_graphs"):
        words.append("CUDA graph (parts not timed)")
    if row.get("scaler_skipped", 0) > 0:
        words.append(f"{int(row['scaler_skipped'])} measured steps skipped by the GradScaler, left out of the times")
    return ", ".join(words)


def recommendation(summary, budget_gb):
    ok = summary[summary["status"] == "ok"].dropna(subset=["median_ms"])
    if ok.empty:
        return "No technique ran successfully in this configuration."
    faster = ok[ok["verdict"] == "faster"]
    single_run = faster["one_run"] == True  # noqa: E712 - blank is not True
    shown, single = faster[~single_run], faster[single_run]
    if len(shown):
        best = shown["speedup"].idxmax()  # per token: accum steps hold more
        row = shown.loc[best]
        lines = [f"- **Fastest:** `{best}`, {row['median_ms']:.2f} ms/step, {_speedup(row)} the baseline"]
    else:
        best = ok["median_ms"].idxmin()
        lines = [
            f"- **Fastest:** no technique is shown faster than the baseline here; the lowest median is "
            f"`{best}`'s, {ok.loc[best, 'median_ms']:.2f} ms/step"
        ]
    if len(single):
        named = ", ".join(f"`{t}` {_speedup(single.loc[t])}" for t in single.index)
        lines.append(
            f"- **Not shown by one run{ONE_RUN}:** {named}: speedups over the baseline whose CIs see one "
            "process only; repeat (`REPEATS=3` or `PRECISION=0.02`) before calling them faster"
        )
    lines.append(floor_line(summary))
    if ok["memory_mib"].notna().any():
        leanest = ok["memory_mib"].idxmin()
        kind = "peak allocated" if ok.loc[leanest, "memory_kind"] == "peak_alloc_mib" else "peak RSS"
        lines.append(f"- **Least memory:** `{leanest}`, {ok.loc[leanest, 'memory_mib'] / GIB:.2f} GiB {kind}")
    if budget_gb is None:
        lines.append("- **Within a memory budget:** set `BUDGET_GB=` to get the fastest technique that fits.")
    else:
        fits = ok[ok["memory_mib"] <= budget_gb * GIB]
        lines.append(
            f"- **Fastest within {budget_gb:g} GiB:** "
            + (
                f"`{fits['median_ms'].idxmin()}`, {fits['median_ms'].min():.2f} ms/step"
                if len(fits)
                else "none of the techniques fits"
            )
        )
    return "\n".join(lines)


def _speedup(row):
    return f"{row['speedup']:.2f}× [{row['speedup_lo']:.2f}, {row['speedup_hi']:.2f}]"


def floor_line(summary):
    """What the A/A technique says about this machine's noise, and how the verdicts use it."""
    floor = stats.aa_floor(summary)
    if floor is None:
        return (
            f"- **Noise floor:** not measured: run `{stats.AA_CHECK}` (the baseline under another name) in this "
            "configuration to see how much two identical configurations differ here"
        )
    point, low, high = floor
    aa = summary.loc[stats.AA_CHECK]
    held = aa["speedup_lo"] <= 1 <= aa["speedup_hi"]
    drift = "" if held else "; its CI excludes 1.0, so this machine drifted or is noisy"
    return (
        f"- **Noise floor:** `{stats.AA_CHECK}`, identical to the baseline, measured {_speedup(aa)}: two "
        f"identical configurations differed by {point:.1%} [{low:.1%}, {high:.1%}] here{drift}; a speedup whose CI "
        f"reaches into {1 - point:.2f}–{1 + point:.2f} is reported as within the noise floor, not shown"
    )


def environment(df):
    row = df.iloc[-1]
    shas = ", ".join(dict.fromkeys(str(sha) for sha in df["git_sha"].dropna())) or "unknown"
    first, last = df["timestamp_utc"].min(), df["timestamp_utc"].max()
    cuda = f"driver {row['driver']}, CUDA {row['cuda']}" if row["driver"] == row["driver"] else "no CUDA"
    return f"{row['device']} on {row['host']} · {cuda} · torch {row['torch']} · suite {shas} · runs {first} to {last}"


def _slug(text):
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()[:60]


def build(
    results_file, out, plots_dir, prefix="", device_filter="", budget_gb=None, peak_tflops=None, target_loss=None
):
    """Write the report; return its markdown."""
    df = results.read(results_file)
    convergence.check_target(df, target_loss)
    if peak_tflops:  # judge every run against the given peak instead of the table's
        df["peak_tflops"] = peak_tflops
        df["mfu"] = df["tflops"] / peak_tflops
    configs = stats.configurations(df, device_filter)
    memory_section = memreport.section(df, plots_dir, out, prefix, budget_gb)  # issue 8
    if not configs and not memory_section:
        raise results.ResultsFileError(
            f"{results_file} has no runs" + (f" on a device matching {device_filter!r}" if device_filter else "")
        )
    out = Path(out)
    sections = [
        f"# Training optimizations: results\n\nFrom `{results_file}`; {len(configs)} configuration(s). "
        "Step times are of measured steps only "
        f"(warm-up excluded); CIs are 95% bootstrap intervals ({stats.RESAMPLES} resamples, runs then steps). "
        "A speedup whose CI holds 1.0 is reported as no detectable difference, one whose CI reaches into the "
        f"noise floor (how far `{stats.AA_CHECK}`, an A/A copy of the baseline, lands from 1.0) as within "
        "the noise floor. MFU is against the dense peak of the precision "
        "that ran (blank where the device is not in the table; `PEAK_TFLOPS=` sets one). Best of each column in bold."
    ]
    for name, rows in configs:
        summary = stats.summary(rows)
        config_prefix = prefix + (f"{_slug(name)}_" if len(configs) > 1 else "")
        paths, notes = plots.plots_for(rows, plots_dir, config_prefix) if len(stats.measured(rows)) else ([], [])
        images = "\n".join(f"![{p.stem}]({os.path.relpath(p, out.parent)})" for p in paths)
        learning = convergence.section(rows, summary, target_loss)
        sections.append(
            f"## {name}\n\n{environment(rows)}\n\n{table(summary)}\n\n{recommendation(summary, budget_gb)}\n\n"
            + (f"{learning}\n\n" if learning else "")
            + "\n".join(f"_{n}_" for n in notes)
            + f"\n\n{images}"
        )
    sections += [memory_section] if memory_section else []
    text = "\n\n".join(sections) + "\n"
    out.write_text(text)
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", default="results.csv")
    parser.add_argument("--out", default="REPORT.md")
    parser.add_argument("--plots-dir", default="plots")
    parser.add_argument("--prefix", default="")
    parser.add_argument("--device-filter", default="")
    parser.add_argument("--budget-gb", default="")
    parser.add_argument("--peak-tflops", default="table")
    parser.add_argument("--target-loss", default="")
    args = parser.parse_args(argv)
    try:  # every setting first, so a bad one stops before any plot is drawn
        budget = checks.optional(checks.number, "BUDGET_GB", args.budget_gb)
        peak = None if args.peak_tflops == "table" else checks.number("PEAK_TFLOPS", args.peak_tflops)
        checks.output_file("REPORT", args.out)
        checks.output_dir("PLOTS_DIR", args.plots_dir)
        checks.file_prefix("PLOTSPREFIX", args.prefix)
        target = convergence.parse_target(args.target_loss)
        text = build(args.results, args.out, args.plots_dir, args.prefix, args.device_filter, budget, peak, target)
    except (checks.BadInput, convergence.TargetError) as err:
        print(f"report: error: {err}", file=sys.stderr)
        return checks.EXIT_BAD_INPUT
    print("\n".join(line for line in text.splitlines() if not line.startswith("![")))
    print(f"\nreport: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
