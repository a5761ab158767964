"""`make all`: run techniques one after another, each in a fresh process, go on past any
that fails, then print one line per run and exit non-zero only if one failed.

With REPEATS=N each technique runs N times, interleaved (A B C A B C ...), so that drift of
the machine (clocks, temperature, other load) spreads evenly over the techniques instead of
landing on whichever ran last. Each run's rows carry its repeat index.

With CI_HALF_WIDTH=p it keeps adding such rounds until the CI that judges each technique (its
speedup's against the baseline; the baseline's own mean, and every technique's where no
baseline runs) has a half-width within ±p of its value, from at least stats.MIN_RUNS runs
(and REPEATS), or until MAX_REPEATS rounds, or until another round would end past
TIME_BUDGET_MIN; then it says which techniques were resolved, which not, and why it stopped.
Only the runs of this invocation count (their run_ids, reported by each script), never rows
that were in RESULTS_FILE before. A technique skipped or failed in the first round is not
repeated and does not hold up the others.

usage: python -m utils.drivers.all [technique ...]   (default: TECHNIQUES; REPEATS, CI_HALF_WIDTH
and the run settings from the environment)
"""

import sys
import time
from dataclasses import dataclass, field

from utils import checks, registry, results, settings
from utils.analysis import stats, stopping
from utils.drivers.runner import FAILED, run
from utils.measure import config


def repeat_settings(given):
    """REPEATS and the adaptive settings, checked:
    (repeats, precision or None, max_repeats, time budget in seconds)."""
    repeats, precision, max_repeats = given.repeats, given.ci_half_width, given.max_repeats
    budget_s = given.time_budget_min * 60
    if precision is not None and max_repeats < repeats:
        raise checks.BadInput(
            f"MAX_REPEATS={max_repeats} is below REPEATS={repeats}: with CI_HALF_WIDTH, REPEATS is the least"
        )
    return repeats, precision, max_repeats, budget_s


def judge(results_file, run_ids, precision, min_runs, rounds, max_rounds, elapsed_s, round_s, budget_s):
    """Read this invocation's rows back and apply the stopping rule: stopping.adaptive_stop's
    (stop, why, resolved, unresolved), and the widths judged."""
    rows = results.read(results_file)
    progress = stopping.judged_widths(stats.summary(rows[rows["run_id"].isin(run_ids)]))
    return (
        *stopping.adaptive_stop(progress, precision, min_runs, rounds, max_rounds, elapsed_s, round_s, budget_s),
        progress,
    )


def _listed(names, progress):
    runs = {name: int(progress.loc[name, "runs"]) for name in names}
    return (
        ", ".join(
            f"{name} ±{progress.loc[name, 'width']:.1%} ({runs[name]} run{'s' * (runs[name] > 1)})" for name in names
        )
        or "none"
    )


@dataclass(frozen=True)
class Job:
    """One run of a round: a technique or combination, with settings on top of the environment."""

    name: str
    overrides: tuple = ()  # (variable, value) pairs
    label: str = ""  # how the run is announced (blank: its name)


@dataclass
class Rounds:
    """What the runs of this invocation did so far."""

    outcomes: list = field(default_factory=list)  # (status, line) per run
    run_ids: list = field(default_factory=list)  # of this invocation's rows: only they are judged
    count: int = 0  # rounds run
    stopped: tuple = None  # adaptive: (why, resolved, unresolved, progress) once it stopped


def _round(state, active, repeats, precision, planned):
    """Run each job of `active` once; return the ones that ran ok."""
    ran = []
    for job in active:
        count = f"{len(state.outcomes) + 1}/{planned}" if precision is None else (
            f"round {state.count + 1}, run {len(state.outcomes) + 1}")
        label = job.label or job.name
        print(f"\n=== [{count}] {label}" + (f" (repeat {state.count})" if repeats > 1 or precision else ""), flush=True)
        outcome = run(job.name, {**dict(job.overrides), "REPEAT": str(state.count)})
        state.outcomes.append((outcome.status, outcome.line))
        state.run_ids.append(outcome.run_id)
        if outcome.status == "ok":
            ran.append(job)
    state.count += 1
    return ran


def run_rounds(jobs, results_file, repeats, precision=None, max_repeats=None, budget_s=float("inf")):
    """REPEATS interleaved rounds of `jobs` (names or Jobs: A B C A B C), or with CI_HALF_WIDTH
    rounds until the stopping rule says stop."""
    jobs = [job if isinstance(job, Job) else Job(job) for job in jobs]
    state, active, started = Rounds(), jobs, time.monotonic()
    try:
        while True:
            round_started = time.monotonic()
            ran = _round(state, active, repeats, precision, len(jobs) * repeats)
            if precision is None:
                if state.count == repeats:
                    return state
                continue
            if state.count == 1:
                active = ran  # skipped or failed in the first round: not repeated
            now = time.monotonic()
            stop, why, resolved, unresolved, progress = judge(
                results_file, state.run_ids, precision, max(repeats, stats.MIN_RUNS), state.count, max_repeats,
                now - started, now - round_started, budget_s)
            print(f"\n=== after round {state.count}: resolved within ±{precision:.1%}: {_listed(resolved, progress)}; "
                  f"not yet: {_listed(unresolved, progress)}", flush=True)
            if stop:
                state.stopped = (why, resolved, unresolved, progress)
                return state
    except KeyboardInterrupt:
        state.outcomes.append(("error", "interrupted: the technique running then wrote nothing"))
    except checks.BadInput as err:  # RESULTS_FILE changed under us between rounds
        state.outcomes.append(("error", f"adaptive repeats stopped: {err}"))
    return state


def summary(names, state, precision):
    """Print a line per run, what the adaptive rule decided, the counts; return the exit status."""
    print("\n=== summary")
    for status, line in state.outcomes:
        print(f"  {status:<8} {line}")
    if state.stopped:
        why, resolved, unresolved, progress = state.stopped
        not_measured = [name for name in names if name not in progress.index]
        print(f"adaptive: stopped after {state.count} round(s): {why}")
        print(f"  resolved     (±{precision:.1%}): {_listed(resolved, progress)}")
        print(f"  not resolved (±{precision:.1%}): {_listed(unresolved, progress)}")
        if not_measured:
            print(f"  not measured (skipped or failed): {' '.join(not_measured)}")
    failed = [line.split(":")[0] for status, line in state.outcomes if status in FAILED]
    counts = {s: sum(1 for status, _ in state.outcomes if status == s) for s in ("ok", "skipped")}
    print(f"all: {counts['ok']} ok, {counts['skipped']} skipped, {len(failed)} failed"
          + (f" ({' '.join(failed)})" if failed else ""))
    return 1 if failed else 0  # an interrupted or cut-short run is listed as an error too


@checks.command("all")
def main(names=None):
    given = settings.read()
    names = registry.check(names) if names else registry.chosen(given)
    cfg = config.load("all", given)  # one clear error for bad settings, not one per technique
    for name in names:
        config.check_technique(name, cfg.compile_mode, cfg.accum, grad_clip=cfg.grad_clip)
    repeats, precision, max_repeats, budget_s = repeat_settings(given)
    state = run_rounds(names, cfg.results_file, repeats, precision, max_repeats, budget_s)
    return summary(names, state, precision)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
