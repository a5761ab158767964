"""make all's adaptive repeats: when the CIs that judge each technique are narrow enough to stop
(REPEATS=auto: PRECISION, MIN_RUNS, MAX_REPEATS, TIME_BUDGET_MIN)."""

import pandas as pd

from utils.catalog import BASELINE


def judged_widths(table):
    """Per technique that ran: the relative half-width of the CI that judges it, and its runs.
    Against a baseline a technique is judged by its speedup CI, the baseline (and every
    technique where there is none) by its own mean step time's CI."""
    ran = table[table["measured_runs"] > 0]
    own = (ran["mean_hi"] - ran["mean_lo"]) / 2 / ran["mean_ms"]
    vs_baseline = (ran["speedup_hi"] - ran["speedup_lo"]) / 2 / ran["speedup"]
    width = vs_baseline.where(vs_baseline.notna() & (ran.index != BASELINE), own)
    return pd.DataFrame({"width": width, "runs": ran["measured_runs"]})


def adaptive_stop(progress, precision, min_runs, rounds, max_rounds, elapsed_s, round_s, budget_s):
    """The stopping rule of adaptive repeats, a pure function. `progress`: judged_widths() of
    the techniques measured so far. Resolved: CI half-width within ±precision, from at least
    min_runs runs. Returns (stop, why, resolved, unresolved); it stops when every technique is
    resolved, at max_rounds, or when another round (round_s) would end past budget_s."""
    done = (progress["width"] <= precision) & (progress["runs"] >= min_runs)
    resolved, unresolved = list(progress.index[done]), list(progress.index[~done])
    if progress.empty:
        return True, "no technique was measured, so there is nothing to resolve", resolved, unresolved
    if not unresolved:
        return True, f"every technique's CI is within ±{precision:.1%}", resolved, unresolved
    if rounds >= max_rounds:
        return True, f"MAX_REPEATS={max_rounds} runs per technique reached", resolved, unresolved
    if elapsed_s + round_s > budget_s:
        return (True, f"TIME_BUDGET_MIN={budget_s / 60:g}: another round (~{round_s / 60:.1f} min) would end past it "
                f"({elapsed_s / 60:.1f} min spent)", resolved, unresolved)
    return False, "", resolved, unresolved
