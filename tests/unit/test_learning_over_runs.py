"""Learning figures over repeats, each run counted: the final and best validation loss, the time to a target
where some runs never reached it, and the grid's wall-clock answer from a cell's median run, not its luckiest."""

import math

import numpy as np
import pandas as pd
import pytest

from utils import results
from utils.analysis import convergence, grid, stats

NEVER = None  # a run that does not reach the target


def _evals(technique, run_id, losses, seconds=None):
    return [{"run_id": run_id, "technique": technique, "status": "ok", "phase": "eval", "step": i,
             "train_steps": 10 * i, "train_s": seconds[i] if seconds else float(i), "val_loss": loss,
             "train_loss": loss}
            for i, loss in enumerate(losses)]


def _frame(rows):
    return pd.DataFrame(rows).reindex(columns=list(results.COLUMNS))


def test_the_median_time_counts_a_run_that_never_got_there_as_slower_than_any():
    def median(times):
        return stats.censored_median([np.nan if t is NEVER else t for t in times], [t is not NEVER for t in times])

    assert median([3.0, 1.0, 2.0]) == 2.0 and median([9.0, 30.0, NEVER]) == 30.0
    assert median([1.0, 2.0, 3.0, NEVER]) == 2.5
    for fewer_than_most in ([9.0, NEVER, NEVER], [1.0, 2.0, NEVER, NEVER], []):
        assert math.isnan(median(fewer_than_most))


def test_final_and_best_val_loss_count_every_run():
    diverged = _evals("risky", "r1", [5.0, float("nan"), float("nan")])
    # the diverged run is written first: the last evaluation of the last run alone would read 0.75
    ev = _frame(diverged + _evals("risky", "r0", [5.0, 1.0, 0.70]) + _evals("risky", "r2", [5.0, 1.0, 0.75])
                + _evals("steady", "s0", [5.0, 0.9, 0.80]) + _evals("steady", "s1", [5.0, 0.6, 0.70])
                + _evals("steady", "s2", [5.0, 1.0, 0.90]))
    final, best = convergence.final_and_best(ev)
    assert math.isnan(final["risky"]) and final["steady"] == pytest.approx(0.80)  # the mean of each run's last
    assert best["risky"] == pytest.approx(0.75) and best["steady"] == pytest.approx(0.80)  # the median run's best
    text = convergence.section(ev, pd.DataFrame(columns=["speedup"]))
    assert "| `risky` | – | nan (diverged) | 0.750 (2.12) |" in text


def test_a_time_to_target_speedup_only_where_every_run_reached_it():
    rows = []
    for k in range(3):
        rows += _evals("baseline", f"b{k}", [5.0, 1.0, 0.7], [0.0, 1.0, 2.0])
        rows += _evals("quick", f"q{k}", [5.0, 0.7, 0.7], [0.0, 0.5, 1.0])
    rows += _evals("risky", "r0", [5.0, 0.7, 0.7], [0.0, 0.5, 1.0])  # one of three reached it, the others diverged
    rows += [row for k in (1, 2) for row in _evals("risky", f"r{k}", [5.0, float("nan"), float("nan")])]
    rows += _evals("mostly", "m0", [5.0, 0.7], [0.0, 0.5]) + _evals("mostly", "m1", [5.0, 0.7], [0.0, 1.5])
    rows += _evals("mostly", "m2", [5.0, 0.9], [0.0, 0.5])
    summary = convergence.target_summary(_frame(rows), 0.8)
    cells = summary.apply(convergence.target_cell, axis=1)
    assert cells["risky"] == "1/3 runs reached it: no median"
    assert cells["mostly"] == "10 steps, 1.50 s (2/3 runs reached it)"  # the middle run of three
    base = summary.loc["baseline"]
    assert convergence.target_speedup(summary.loc["quick"], base) == "4.00×"
    assert convergence.target_speedup(summary.loc["risky"], base) == "–"
    assert convergence.target_speedup(summary.loc["mostly"], base) == "–"
    assert convergence.target_speedup(base, summary.loc["mostly"]) == "–"  # nor against a baseline that missed it


def _grid(cells):
    """{optimizer: [seconds to val loss 0.5, NEVER, or "diverged"]}: the runs' table and evaluations."""
    table, ev = [], []
    for optimizer, runs in cells.items():
        for k, reached_at in enumerate(runs):
            run_id, times = f"{optimizer}{k}", [0.0, 5.0, 9.0, 10.0, 10.5, 11.0, 30.0, 40.0]
            losses = ([float("nan")] * len(times) if reached_at == "diverged" else
                      [0.5 if reached_at is not NEVER and s >= reached_at else 1.0 for s in times])
            ev += _evals(optimizer, run_id, losses, times)
            finite = [v for v in losses if v == v]
            table.append({"run_id": run_id, "arch": "GPT", "model": "tiny", "layers": 2, "optimizer": optimizer,
                          "lr": 1e-3, "stalls": 0, "val_ppl": math.exp(min(finite)) if finite else np.nan,
                          "train_ppl": 1.7, "exp": len(table) + 1, "epoch": 1, "at_step": 1, "at_s": 1.0,
                          "train_s": 40.0, "memory_mib": 1.0, "memory_kind": "", "n_params": 1, "floor": np.nan})
    return pd.DataFrame(table), _frame(ev)


@pytest.mark.parametrize("sgd", [[9.0, 30.0, NEVER], [9.0, "diverged", "diverged"]])
def test_the_grids_wall_clock_answer_is_a_cells_median_run_not_its_luckiest(sgd):
    table, ev = _grid({"adam": [10.0, 10.5, 11.0], "sgd": sgd})
    answer = grid.answer(table, ev, target=0.6)
    assert "**Wall-clock:** GPT with 2 layers and adam (exp 1): validation loss 0.6 after 10.50 s" in answer
    assert "(3 of its 3 reached it;" in answer


def test_no_cell_with_a_median_run_at_the_target_is_no_answer():
    table, ev = _grid({"sgd": [9.0, NEVER, NEVER]})
    assert "no cell has a median time to validation loss 0.6" in grid.answer(table, ev, target=0.6)
    assert "(1 of 3 runs did)" in grid.answer(table, ev, target=0.6)


def test_the_grids_to_target_column_is_the_cells_median_as_the_answer_has_it():
    table, ev = _grid({"adam": [11.0, 10.0, 10.5], "sgd": [9.0, 30.0, NEVER]})
    text = grid.best_table(grid.cells(table), convergence.time_to_target(ev, 0.6))
    rows = [[cell.strip().strip("*") for cell in line.split("|")] for line in text.splitlines()[2:]]
    to_target = {row[4]: row[-2] for row in rows}  # by optimizer
    # adam's median run (10.5 s), not its median-perplexity run's own time (a tie: the second, 10.0 s); sgd's middle
    # of 9, 30 and never: 30
    assert to_target == {"adam": "10.50 s (3/3)", "sgd": "30.00 s (2/3)"}
