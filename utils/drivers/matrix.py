"""`make matrix`: a full factorial of techniques, the table users make by hand.

Every combination of FACTORS (techniques on or off) x OPTIMIZERS on top of BASE is a cell:
BASE=bf16 FACTORS="checkpointing flash" OPTIMIZERS="adamw lion" is 8 cells, from bf16 with
the baseline's AdamW to flash+checkpointing+lion. Measured: each cell a fresh process,
REPEATS interleaved as make all runs them. PLAN=1 GPU=a100-40gb: planned for that GPU on
fake tensors instead (peak allocated, reserved and device total). MAXBATCH=1: also the
largest batch per cell (measured, or planned).
Then MATRIX_REPORT: a row per cell (a mark per factor, the optimizer, peak memory, step
time and it/s, tokens/s, max batch), each factor's and optimizer's main effect on memory and
on step time, and each pair of factors' interaction, with CIs where there are repeats.
Predicted cells are marked predicted and have no time. In OPTIMIZERS, adamw is the
baseline's AdamW.

usage: python -m utils.drivers.matrix   (BASE, FACTORS, OPTIMIZERS, PLAN, GPU, GPU_MEMORY_GIB, ALLOCATOR,
MAXBATCH, MATRIX_REPORT, MATRIX_MAX_CELLS, REPEATS and the run settings from the environment)
"""

import sys
import tempfile
from pathlib import Path

from utils import checks, registry, results, settings
from utils.analysis import matrix
from utils.drivers import all as repeats
from utils.drivers import maxbatch
from utils.measure import env
from utils.plan import planner
from utils.plan.config import planned_device, predicted_row, runs_of, where
from utils.report.matrix import markdown
from utils.techniques import setup_of


def design(given):
    """(base parts, factors, optimizers, cells), every name and cell checked: bad input stops here."""
    base = [p for p in given.base.split("+") if p]
    factors, optimizers = list(given.factors), list(given.optimizers)
    registry.check_scripts([*base, *factors] or ["baseline"], "technique in BASE or FACTORS:")
    registry.check_scripts(optimizers, "optimizer in OPTIMIZERS:")
    if stray := [f for f in factors if registry.is_optimizer(f)]:
        raise checks.BadInput(f"FACTORS: {' '.join(stray)} is an optimizer: put it in OPTIMIZERS (cells have one)")
    if stray := [o for o in optimizers if not registry.is_optimizer(o)]:
        raise checks.BadInput(f"OPTIMIZERS: {' '.join(stray)} is not an optimizer (adamw is the baseline's)")
    if len(set(factors)) < len(factors) or len(set(optimizers)) < len(optimizers):
        raise checks.BadInput("FACTORS and OPTIMIZERS must each name a technique once")
    count, limit = 2 ** len(factors) * len(optimizers), given.matrix_max_cells
    if count > limit:
        raise checks.BadInput(f"{len(factors)} factors x {len(optimizers)} optimizer(s) make {count} cells, above "
                              f"MATRIX_MAX_CELLS={limit}: raise it to run them all, or name fewer FACTORS")
    cells = matrix.cells(base, factors, optimizers, lambda parts: registry.check(["+".join(parts)])[0] if parts
                         else registry.BASELINE)
    return base, factors, optimizers, cells


def _planned(cells, cfgs, target, given):
    """Plan each cell (its config in `cfgs`; and, with MAXBATCH=1, its largest batch) on the target
    GPU: the rows written."""
    rows, device = [], planned_device(target)
    for i, cell in enumerate(cells, 1):
        print(f"\n=== [{i}/{len(cells)}] {cell.name} (planned)", flush=True)
        cfg, setup = cfgs[cell.name], setup_of(cell.name)[1]
        plan = planner.plan(setup, cfg, target)
        rows.append(predicted_row(cfg, cell.name, plan, device))
        memory = plan.memory
        print(f"matrix: {cell.name} on {memory.gpu} (predicted): {memory.allocated_mib / 1024:.2f} GiB allocated, "
              f"{memory.reserved_mib / 1024:.2f} reserved, {memory.total_mib / 1024:.2f} device total"
              + ("" if memory.fits else " (does not fit)"), flush=True)
        if given.maxbatch:
            best, _ = maxbatch.planned_search(cell.name, target, given, planned={cfg.batch: memory})
            rows.append(results.identity(cfg, cell.name, device, batch=best, status="ok", phase="maxbatch",
                                         kind="predicted", reason=f"largest batch B={best} on {memory.gpu}"))
    return rows


def _measured_batches(cells, cfg):
    rows, device = [], env.capture(cfg.device)
    with tempfile.TemporaryDirectory() as tmp:
        scratch = str(Path(tmp) / "trials.csv")
        for cell in cells:
            best, _ = maxbatch.search(lambda b, n=cell.name: maxbatch.measured_trial(n, b, None, scratch))
            rows.append(results.identity(cfg, cell.name, device, batch=best, status="ok", phase="maxbatch",
                                         kind="measured", reason=f"largest batch B={best} on {device['device']}"))
    return rows


def _announce(cells, planned, runs_each, with_batch):
    what = "plans" if planned else f"fresh processes ({runs_each} per cell, interleaved)"
    what += ", then a largest-batch search per cell (a handful of plans, or a dozen short runs, each)" * with_batch
    cost = ("a plan takes under a second for the tiny model, about 5 s for GPT2-XL on a 2-core CPU" if planned else
            "each run is a process start (a few seconds) plus WARMUP + STEPS steps")
    print(f"matrix: {len(cells)} cells, {len(cells) * (1 if planned else runs_each)} {what}; {cost}", flush=True)


@checks.command("matrix", planner.NotModelled)
def main():
    given = settings.read()
    base, factors, optimizers, cells = design(given)
    planned, with_batch = given.plan, given.maxbatch
    out = checks.output_file("MATRIX_REPORT", given.matrix_report, given.results_file)
    target, cfgs = runs_of([cell.name for cell in cells], given)
    cfg = cfgs[cells[0].name]
    runs_each = given.repeats
    _announce(cells, planned, runs_each, with_batch)
    status = 0
    if planned:
        rows = _planned(cells, cfgs, target, given)
        ids = {row["run_id"] for row in rows}
        results.append_rows(cfg.results_file, rows)
    else:
        state = repeats.run_rounds([c.name for c in cells], cfg.results_file, runs_each)
        status = repeats.summary([c.name for c in cells], state, None)
        extra = _measured_batches(cells, cfg) if with_batch else []
        if extra:
            results.append_rows(cfg.results_file, extra)
        ids = {*filter(None, state.run_ids), *(row["run_id"] for row in extra)}
    df = results.read(cfg.results_file)
    table = matrix.table(df[df["run_id"].isin(ids)], cells)
    on = (f"planned for {where(target, cfg.world)}, allocator {target.allocator}" if planned
          else env.capture(cfg.device)["device"])
    text = markdown(table, factors, base, cfg, on, planned, target.gpu.memory_gib if planned else None)
    out.write_text(text)
    print(text + f"\nmatrix: wrote {out}")
    return status


if __name__ == "__main__":
    sys.exit(main())
