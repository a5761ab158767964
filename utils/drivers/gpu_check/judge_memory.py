"""The judging half of gpu_check's memory checks: (d) CUDA graphs' memory against the same step
without graphs, (f) the planner's prediction for this GPU against what was measured. Pure:
results.csv rows and the plan's output in, Checks out."""

import re

import pandas as pd

from utils.drivers.gpu_check.judge import FAIL, NA, SMOKE, Check, Result, info, judged, measured_steps, runs, text

# (d) a graphed run -> the run of the same step without graphs. A CUDA graph replays the step's
# kernels into memory held by its private pool: the activations are still there, so the measured
# peak allocated stays near the ungraphed step's; a much smaller one means the pool went uncounted.
# compile's reference is compile in the default mode (inductor's fusions without graphs), not the
# eager baseline, so that what inductor saves is not read as a missing pool
GRAPHED = {"cudagraphs": "baseline", "compile (reduce-overhead)": "compile"}
GRAPHED_MIN_ALLOC_RATIO = 0.8

# (f) relative error of the plan against the measured run (README: H100 allocated within 5%, the
# GPT2-XL study's totals mostly within 10%, eager step times within 16%), with room for a new GPU
PLAN_ALLOC_TOLERANCE = 0.10
PLAN_RESERVED_TOLERANCE = 0.15
PLAN_TOTAL_TOLERANCE = 0.15
PLAN_STEP_TOLERANCE = 0.30
PLANNED = {  # predicted column -> (what it is, tolerance, unit)
    "peak_alloc_mib": ("peak allocated", PLAN_ALLOC_TOLERANCE, "MiB"),
    "peak_reserved_mib": ("peak reserved", PLAN_RESERVED_TOLERANCE, "MiB"),
    "device_total_mib": ("device total", PLAN_TOTAL_TOLERANCE, "MiB"),
    "step_ms": ("step time", PLAN_STEP_TOLERANCE, "ms"),
}
REFUSED = re.compile(r"^(\S+)\s+not modelled: (.+)$", re.M)  # how make plan says it refused a technique


def figure(value, unit="MiB"):
    digits = 2 if unit == "ms" else 1
    return "blank" if text(value) == "blank" else f"{value:,.{digits}f} {unit}"


# (d) graph memory


def graph_memory(rows):
    """For baseline, cudagraphs, compile and compile (reduce-overhead): the warm-up and measured
    peaks, reserved and device total; each graphed run's measured peak allocated against its
    ungraphed reference's, and reserved >= allocated, device total >= reserved for every run."""
    found, results = runs(rows), []
    for name in [run for graphed, reference in GRAPHED.items() for run in (reference, graphed)]:
        run = found.get(name)
        if run is None or run.iloc[0]["status"] != "ok":
            why = "no run" if run is None else f"{run.iloc[0]['status']}: {text(run.iloc[0]['reason'])}"
            results.append(judged(name, "measured", why, "an ok run", False))
            continue
        results += _memory_lines(name, run, found)
    return Check("d", "graph memory", "CUDA graphs keep their activations in a private pool: the measured peak must "
                 "count it", tuple(results))


def _memory_lines(name, run, found):
    measured, warmup = run[run["phase"] == "measured"].iloc[0], run[run["phase"] == "warmup"]
    allocated, reserved, total = (measured[c] for c in ("peak_alloc_mib", "peak_reserved_mib", "device_total_mib"))
    lines = [info(name, "peak allocated, warm-up", figure(warmup["peak_alloc_mib"].max() if len(warmup) else None)),
             info(name, "peak allocated, measured", figure(allocated))]
    reference = GRAPHED.get(name)
    if reference is not None:
        value, ratio = _against(allocated, found.get(reference))
        lines.append(judged(name, f"peak allocated / {reference}'s", value, f">= {GRAPHED_MIN_ALLOC_RATIO:g}",
                            ratio >= GRAPHED_MIN_ALLOC_RATIO))
        if reference != "baseline":  # the eager step's too, shown
            lines.append(info(name, "peak allocated / baseline's", _against(allocated, found.get("baseline"))[0]))
    lines.append(judged(name, "peak reserved >= allocated", f"{figure(reserved)} vs {figure(allocated)}",
                        "reserved >= allocated", reserved >= allocated))
    lines.append(judged(name, "device total >= reserved", f"{figure(total)} vs {figure(reserved)}",
                        "device total >= reserved", total >= reserved))
    return lines


def _against(allocated, reference):
    """('a / b = ratio', ratio) of a measured peak allocated against the `reference` run's."""
    ref = reference[reference["phase"] == "measured"]["peak_alloc_mib"].max() if reference is not None else None
    ratio = allocated / ref if text(ref) != "blank" and ref else float("nan")
    return f"{figure(allocated)} / {figure(ref)} = {ratio:.2f}", ratio


# (f) the planner


def refusals(output):
    """{technique: why} for each technique make plan's output says it cannot model."""
    return {name: why.strip() for name, why in REFUSED.findall(output)}


def plan(rows, gpu_key, device, status, output):
    """make plan GPU=`gpu_key` (None: this device has no entry in the table) against the
    measured runs: allocated, reserved, device total and step time, each within its tolerance.
    `status`, `output`: make plan's exit status and output."""
    about = "make plan for this GPU beside each measured run: predicted against measured, the relative error"
    if gpu_key is None:
        return Check("f", "the planner", about, (Result(device, "GPU=", "no entry in utils/devices.py's table", "–",
                                                        NA),))
    results, refused, found = [], refusals(output), runs(rows)
    results.append(judged(f"GPU={gpu_key}", "make plan exit status", str(status), "0", status == 0))
    predicted = rows[rows["kind"] == "predicted"]
    for technique in SMOKE:
        results += plan_lines(technique, predicted[predicted["technique"] == technique], found.get(technique),
                               refused.get(technique))
    return Check("f", "the planner", about, tuple(results))


def plan_lines(technique, predicted, run, refused):
    if refused is not None:
        return [Result(technique, "plan", f"not planned: {refused}", "–", NA)]
    if run is None or run.iloc[0]["status"] != "ok":
        return [Result(technique, "plan", "not measured ok: see (b)", "–", NA)]
    if predicted.empty:
        return [Result(technique, "plan", "no predicted row (see plan.log)", "a predicted row", FAIL)]
    row, steps = predicted.iloc[-1], measured_steps(run)
    lines = []
    for column, (what, tolerance, unit) in PLANNED.items():
        measured = steps["step_ms"].median() if column == "step_ms" else steps[column].iloc[0]
        error = row[column] / measured - 1
        value = f"{figure(row[column], unit)} / {figure(measured, unit)}"
        value += "" if pd.isna(error) else f" ({error:+.1%})"
        lines.append(judged(technique, f"{what}, predicted / measured", value, f"within ±{tolerance:.0%}",
                            abs(error) <= tolerance))
    return lines
