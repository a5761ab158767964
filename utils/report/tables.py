"""The report's per-configuration table (best of each column bold) and its recommendations."""

import os

import numpy as np

from utils.analysis import stats
from utils.analysis.convergence import DIVERGED
from utils.analysis.convergence import fmt as _fmt
from utils.catalog import AA_CHECK, BASELINE, compiled_by
from utils.units import MIB_PER_GIB

ONE_RUN = "†"  # marks a row whose CIs rest on a single process
ONE_RUN_NOTE = (
    f"{ONE_RUN} one run: its CIs cover the noise from step to step within one process only, not the "
    "variation between processes, which is often larger; a difference is shown only across repeats "
    "(`REPEATS=3`, or `CI_HALF_WIDTH=0.02` to repeat until the CIs are narrow)."
)
VERDICT_NOTES = {
    "no detectable difference": " (no detectable difference)",
    "within the noise floor": " (within the noise floor)",
    "A/A check": " (A/A: the noise floor)",
}


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


def _memory_columns(summary, get, eligible):
    """The memory column that is compared (bold: least), and on a CPU the process's RSS
    beside it, shown but never compared (mostly the Python process, not the technique)."""
    if summary["peak_alloc_mib"].notna().any():
        cells = [f"{a / MIB_PER_GIB:.2f} / {r / MIB_PER_GIB:.2f}" if a == a else "–"
                 for a, r in zip(summary["peak_alloc_mib"], summary["peak_reserved_mib"])]
        return {"peak alloc / reserved GiB": _bold_best(cells, get("memory_mib"), min, eligible)}
    return {
        "tensor peak MiB (tracked)": _bold_best([_fmt(v, ".1f") for v in get("memory_mib")], get("memory_mib"), min,
                                                eligible),
        "process peak RSS MiB": [_fmt(v, ".0f") for v in get("peak_rss_mib")],
    }


def table(summary):
    """The markdown table of one configuration's summary, best of each column bold."""

    def get(column):
        return summary[column].tolist() if column in summary else [np.nan] * len(summary)

    speed = get("speedup")
    one_run = [flag is True for flag in get("one_run")]
    # the recommendations' rule: only a technique whose every run finished can be a column's best, and only a
    # speedup shown across runs the best speedup
    eligible, faster = stats.every_run_ok(summary).tolist(), stats.shown_faster(summary).tolist()
    speedup_cells = [
        _ci(v, lo, hi, ".2f")
        + VERDICT_NOTES.get(verdict, "")
        + (f" (one run{ONE_RUN})" if one and verdict in ("faster", "slower") else "")
        if v == v
        else "–"
        for v, lo, hi, verdict, one in zip(speed, get("speedup_lo"), get("speedup_hi"), get("verdict"), one_run)
    ]
    columns = {
        "median ms": _bold_best([_fmt(v, ".2f") for v in get("median_ms")], get("median_ms"), min, eligible),
        "mean ms [95% CI]": _bold_best(
            [_ci(v, lo, hi, ".2f") for v, lo, hi in zip(get("mean_ms"), get("mean_lo"), get("mean_hi"))],
            get("mean_ms"),
            min,
            eligible,
        ),
        "fwd / bwd / opt ms": [
            f"{f:.2f} / {b:.2f} / {o:.2f}" if f == f else "–"
            for f, b, o in zip(get("forward_ms"), get("backward_ms"), get("optimizer_ms"))
        ],
        "tokens/s": _bold_best([_fmt(v, ",.0f") for v in get("tokens_per_s")], get("tokens_per_s"), max, eligible),
        # the whole measured phase by the wall clock: below tokens/s when the host is the limit
        "end-to-end tokens/s": _bold_best(
            [_fmt(v, ",.0f") for v in get("wall_tokens_per_s")], get("wall_tokens_per_s"), max, eligible
        ),
        "TFLOP/s": _bold_best([_fmt(v, ".3g") for v in get("tflops")], get("tflops"), max, eligible),
        # above 100% the peak cannot be this device's: say so rather than print a wrong figure
        "MFU": _bold_best(
            [_fmt(v, ".1%") + (" (> peak: wrong PEAK_TFLOPS?)" if v > 1 else "") for v in get("mfu")], get("mfu"), max,
            eligible,
        ),
        **_memory_columns(summary, get, eligible),
        "memory saved MiB": _bold_best(
            [_fmt(v, "+,.0f") for v in get("memory_saved_mib")], get("memory_saved_mib"), max, eligible
        ),
        "speedup [95% CI]": _bold_best(speedup_cells, speed, max, faster),
        "final loss": _bold_best([_fmt(v, ".3f") if v == v or not n else DIVERGED
                                  for v, n in zip(get("final_loss"), get("measured_runs"))], get("final_loss"), min,
                                 eligible),
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
        mode, scope = row.get("compile_mode"), row.get("compile_scope")
        details = [d for d in (mode, compiled_by(scope)) if isinstance(d, str) and d not in ("default", "")]
        words.append("compiled" + (f" ({', '.join(details)})" if details else ""))
    if on("checkpointing"):
        policy = row.get("checkpoint_policy")
        words.append("ckpt" + (f" ({policy})" if isinstance(policy, str) and policy not in ("", "block") else ""))
    if row.get("loss_chunks", 1) == row.get("loss_chunks", 1) and row.get("loss_chunks", 1) > 1:
        kept = " (logits kept)" if row.get("chunk_logits") == "keep" else ""
        words.append(f"loss in {int(row['loss_chunks'])} chunks{kept}")
    words += [text for column, text in (("activation_offload", "activations on the host"),
                                        ("step_in_backward", "optimizer step in backward")) if on(column)]
    if isinstance(row.get("adapter"), str) and row["adapter"]:
        words.append(f"{row['adapter']}, {int(row['trainable_params']):,} parameters trained")
    if row.get("accum", 1) == row.get("accum", 1) and row.get("accum", 1) > 1:
        words.append(f"accum x{int(row['accum'])}")
    if on("cuda_graphs"):
        words.append("CUDA graph (parts not timed)")
    if row.get("scaler_skipped", 0) > 0:
        words.append(f"{int(row['scaler_skipped'])} measured steps skipped by the GradScaler, left out of the times")
    return ", ".join(words)


def recommendation(summary, budget_gib):
    """The closing lines: the fastest technique, the leanest, the fastest within BUDGET_GIB; each among the
    techniques every run of which finished (stats.every_run_ok, the table's bold), the others named."""
    eligible = stats.every_run_ok(summary)
    ok, left_out = summary[eligible], _left_out(summary[~eligible & summary["median_ms"].notna()])
    if ok.empty:
        said = "No technique ran successfully in every run of this configuration." if left_out else (
            "No technique ran successfully in this configuration.")
        return "\n".join(filter(None, [said, left_out]))
    shown = summary[stats.shown_faster(summary)]
    single = ok[(ok["verdict"] == "faster") & (ok["one_run"] == True)]  # noqa: E712 - blank is not True
    if len(shown):
        best = shown["speedup"].idxmax()  # per token: accum steps hold more
        row = shown.loc[best]
        lines = [f"- **Fastest:** `{best}`, {row['median_ms']:.2f} ms/step, {_speedup(row)} the baseline"]
    else:
        per_micro_batch = ok["median_ms"] / ok["accum"].fillna(1)  # an accumulated step holds ACCUM of them
        best = per_micro_batch.idxmin()
        lines = [
            f"- **Fastest:** no technique is shown faster than the baseline here; the lowest median time per "
            f"BATCH x SEQ tokens is `{best}`'s, {per_micro_batch[best]:.2f} ms"
        ]
    if len(single):
        named = ", ".join(f"`{t}` {_speedup(single.loc[t])}" for t in single.index)
        lines.append(
            f"- **Not shown by one run{ONE_RUN}:** {named}: speedups over the baseline whose CIs see one "
            "process only; repeat (`REPEATS=3` or `CI_HALF_WIDTH=0.02`) before calling them faster"
        )
    lines += [left_out] if left_out else []
    lines += [floor_line(summary), least_memory(ok), within_budget(summary, shown, budget_gib)]
    return "\n".join(lines)


def _left_out(partly_failed):
    """The line naming the measured techniques some of whose runs failed, or ''."""
    if partly_failed.empty:
        return ""
    named = ", ".join(f"`{t}` ({failures})" for t, failures in partly_failed["failures"].items())
    return (f"- **Left out:** {named}: where some runs failed the times are of the others alone, so neither bold "
            "nor recommended here; rerun to compare")


def within_budget(summary, shown, budget_gib):
    """The technique shown faster than the baseline (`shown`) whose peak fits BUDGET_GIB, the greatest speedup
    (per token: an accumulated step holds ACCUM micro-batches), or why there is none."""
    if budget_gib is None:
        return "- **Within a memory budget:** set `BUDGET_GIB=` to name the fastest shown faster that fits."
    said = f"- **Fastest within {budget_gib:g} GiB:** "
    limit = budget_gib * MIB_PER_GIB
    fits = shown[shown["memory_mib"] <= limit]
    if len(fits):
        best = fits["speedup"].idxmax()
        row = fits.loc[best]
        return said + (f"`{best}`, {row['median_ms']:.2f} ms/step, {_speedup(row)} the baseline, "
                       f"{_size(row['memory_mib'])} at its peak")
    said += "no technique that fits is shown faster than the baseline"
    base = summary["memory_mib"].get(BASELINE, np.nan)
    if base != base:
        return said + "; the baseline's peak memory is not recorded here"
    return said + (f"; the baseline itself fits, {_size(base)}" if base <= limit
                   else f", and the baseline itself, {_size(base)}, does not fit")


def _size(mib):
    return f"{mib / MIB_PER_GIB:.2f} GiB" if mib >= MIB_PER_GIB else f"{mib:.1f} MiB"


def least_memory(ok):
    """The technique(s) with the least comparable peak: CUDA's allocated, else the tracked
    tensor peak; a CPU's peak RSS (the whole Python process) is not compared."""
    memory = ok["memory_mib"].dropna()
    if memory.empty:
        return ("- **Least memory:** not comparable here: no run recorded a CUDA peak or a tracked tensor peak, and "
                "a CPU's peak RSS is mostly the Python process, not the technique")
    kind = ("peak allocated" if ok.loc[memory.idxmin(), "memory_kind"] == "peak_alloc_mib"
            else "tensor peak (MemTracker's tracked step; compiled runs have none)")
    leanest = memory.index[memory == memory.min()]
    if len(leanest) == len(memory) > 1:
        return f"- **Least memory:** none: every technique tracked holds the same {kind}, {_size(memory.min())}"
    names = ", ".join(f"`{t}`" for t in leanest)
    return f"- **Least memory:** {names}, {_size(memory.min())} {kind}"


def _speedup(row):
    return f"{row['speedup']:.2f}× [{row['speedup_lo']:.2f}, {row['speedup_hi']:.2f}]"


def floor_line(summary):
    """What the A/A technique says about this machine's noise, and how the verdicts use it."""
    floor = stats.aa_floor(summary)
    if floor is None:
        return (
            f"- **Noise floor:** not measured: run `{AA_CHECK}` (the baseline under another name) in this "
            "configuration to see how much two identical configurations differ here"
        )
    point, low, high = floor
    aa = summary.loc[AA_CHECK]
    held = aa["speedup_lo"] <= 1 <= aa["speedup_hi"]
    drift = "" if held else "; its CI excludes 1.0, so this machine drifted or is noisy"
    return (
        f"- **Noise floor:** `{AA_CHECK}`, identical to the baseline, measured {_speedup(aa)}: two "
        f"identical configurations differed by {point:.1%} [{low:.1%}, {high:.1%}] here{drift}; a speedup whose CI "
        f"reaches into {1 / (1 + point):.2f}–{1 + point:.2f} is reported as within the noise floor, not shown"
    )


def image(alt, path, out):
    """A markdown image of the file `path`, linked relative to the report written at `out` (in angle
    brackets where a PLOTS_DIR or PLOTSPREFIX holds a space, which ends a plain link)."""
    target = os.path.relpath(path, os.path.dirname(os.path.abspath(out)))
    return f"![{alt}]({f'<{target}>' if ' ' in target else target})"
