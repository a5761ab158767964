"""A full factorial of techniques, from results.csv rows: each cell's figures, each factor's
main effect (the mean change when it is switched on, over every other setting) and each
pair's interaction (does checkpointing save as much with flash as without?). An effect that
needs a cell without a figure (an OOM, failed or skipped run, a plan without a time) is not
computed: the mean of the other cells would compare "on" and "off" over different settings of
the other factors.

A cell is a combination: BASE + the factors switched on + one optimizer. Its figures come
from its runs (measured: median step time, median tokens/s, the peak memory compared on
that device; predicted: the planner's peak and its roofline's step time) and its maxbatch row
where there is one. With
repeats every effect gets a bootstrap CI: each resample draws each cell's runs with
replacement, then the effect is computed again (stats.RESAMPLES of them).
"""

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from utils.analysis.stats import RESAMPLES, interval, measured, predicted, run_statuses

METRICS = {"memory_mib": "peak memory, MiB", "step_ms": "step time, ms"}


@dataclass(frozen=True)
class Cell:
    name: str  # the canonical combination (a technique's name, or its parts joined with '+')
    on: tuple  # one bool per factor
    optimizer: str


def cells(base, factors, optimizers, canonical):
    """Every cell of the factorial, factors varying fastest; `canonical(parts)` names one."""
    out = []
    for optimizer in optimizers:
        for on in itertools.product((False, True), repeat=len(factors)):
            chosen = [f for f, flag in zip(factors, on) if flag]
            parts = [*base, *chosen, *([] if optimizer == "adamw" else [optimizer])]  # adamw: the baseline's
            out.append(Cell(canonical(parts), on, optimizer))
    return out


def _run_figures(rows):
    """Per run of a cell: (median step ms, median tokens/s, peak allocated MiB, kind, peak
    reserved MiB, device total MiB). Allocated: CUDA's (measured or predicted), else the tracked
    tensor peak; reserved and device total: CUDA's only (NaN elsewhere)."""
    out = []
    for _, run in rows.groupby("run_id", sort=False):
        planned = predicted(run).all()
        steps = run if planned else measured(run)
        if steps.empty:
            continue
        alloc = steps["peak_alloc_mib"].max()
        memory = alloc if alloc == alloc else steps["mem_peak_mib"].max()
        cuda = [steps[c].max() if c in steps else np.nan for c in ("peak_reserved_mib", "device_total_mib")]
        # a plan's time is its roofline (utils/plan/timing.py): one figure, blank where it has none
        out.append((steps["step_ms"].median(), steps["tokens_per_s"].median(), memory,
                    "predicted" if planned else "measured", *cuda))
    return out


def table(df, cell_list):
    """One row per cell: its figures (medians over its runs), runs, kind, largest batch, and its runs' statuses
    (stats.run_statuses: why a cell without runs has no figure; "not run" where it has none)."""
    rows = []
    for cell in cell_list:
        mine = df[df["technique"] == cell.name]
        ran = mine[mine["phase"] != "maxbatch"]
        figures = _run_figures(ran)
        batches = mine[mine["phase"] == "maxbatch"]
        step, tokens, memory, reserved, total = (_median([f[i] for f in figures]) for i in (0, 1, 2, 4, 5))
        rows.append({"cell": cell, "runs": len(figures), "kind": figures[0][3] if figures else "",
                     "status": run_statuses(ran)[0] if len(ran) else "not run",
                     "step_ms": step, "tokens_per_s": tokens, "memory_mib": memory, "reserved_mib": reserved,
                     "device_total_mib": total,
                     "max_batch": int(batches["batch"].iloc[-1]) if len(batches) else None,
                     "per_run": {"step_ms": [f[0] for f in figures], "memory_mib": [f[2] for f in figures],
                                 "device_total_mib": [f[5] for f in figures]}})
    return pd.DataFrame(rows)


def _median(values):
    finite = [v for v in values if v == v]
    return float(np.median(finite)) if finite else np.nan


def _mean(values):
    # a cell without a figure leaves the mean without one: the mean of the others would compare "on" and "off"
    # over different settings of the other factors, and could even flip an effect's sign
    return values.mean()


def _effects(values, flags, cell_optimizers, factors):
    """{factor or optimizer: main effect}, {(f, g): (effect of f with g off, with g on)} from one
    value per cell. An optimizer's effect is against the first one listed."""
    values = np.asarray(values, dtype=float)
    on = np.asarray(flags, dtype=bool).reshape(len(values), len(factors))  # (cells, factors)
    main = {f: _mean(values[on[:, i]]) - _mean(values[~on[:, i]]) for i, f in enumerate(factors)}
    opt = np.asarray(cell_optimizers)
    main.update({o: _mean(values[opt == o]) - _mean(values[opt == opt[0]]) for o in dict.fromkeys(opt)
                 if o != opt[0]})
    pairs = {}
    for (i, f), (j, g) in itertools.combinations(enumerate(factors), 2):
        pairs[f, g] = tuple(_mean(values[on[:, i] & (on[:, j] == g_on)])
                            - _mean(values[~on[:, i] & (on[:, j] == g_on)]) for g_on in (False, True))
    return main, pairs


def effects(cell_table, factors, metric, seed=0):
    """Main effects and interactions of `metric` over the cells: point estimates, and 95% CIs
    where cells have repeats ({name: (point, low, high)}, {(f, g): ((off, on), CI of on - off)});
    NaN where a cell the effect needs has no figure (without_figure names them)."""
    flags = [c.on for c in cell_table["cell"]]
    optimizers = [c.optimizer for c in cell_table["cell"]]
    main, pairs = _effects(cell_table[metric], flags, optimizers, factors)
    # the runs a cell's figure is the median of (_median): a cell without any stays without one in every resample
    per_run = [[v for v in r[metric] if v == v] for r in cell_table["per_run"]]
    with_figures = [v for v in per_run if v]
    repeated = bool(with_figures) and all(len(v) > 1 for v in with_figures)
    draws_main, draws_pairs = {k: [] for k in main}, {k: [] for k in pairs}
    rng = np.random.default_rng(seed)
    for _ in range(RESAMPLES if repeated else 0):
        resampled = [np.median(rng.choice(v, size=len(v))) if v else np.nan for v in per_run]
        m, p = _effects(resampled, flags, optimizers, factors)
        for k in m:
            draws_main[k].append(m[k])
        for k in p:
            draws_pairs[k].append(p[k][1] - p[k][0])
    return ({k: (v, *_ci(draws_main[k])) for k, v in main.items()},
            {k: (v, *_ci(draws_pairs[k])) for k, v in pairs.items()})


def _ci(draws):
    # an effect that needs a cell without a figure has none in any draw, so no CI either
    return interval(draws) if draws and not np.isnan(draws).any() else (np.nan, np.nan)


def without_figure(cell_table, metric):
    """[(cell name, why)] of the cells with no `metric` figure, which leave every effect that needs them
    uncomputed; [] where no cell has one (a metric not measured at all: every effect is blank, nothing to name)."""
    blank = cell_table[cell_table[metric].isna()]
    if len(blank) == len(cell_table):
        return []
    return [(row["cell"].name, _why(row)) for _, row in blank.iterrows()]


def _why(row):
    if not row["runs"]:  # the runs' statuses (oom, error, skipped); ok: they ran, but no step counted
        status = row.get("status", "not run")
        return "no measured step" if status == "ok" else status
    return "planned without one" if row.get("kind") == "predicted" else "not recorded"
