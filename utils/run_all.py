"""`make all`: run techniques one after another, each in a fresh process, go on past any
that fails, then print one line per run and exit non-zero only if one failed.

With REPEATS=N each technique runs N times, interleaved (A B C A B C ...), so that drift of
the machine (clocks, temperature, other load) spreads evenly over the techniques instead of
landing on whichever ran last. Each run's rows carry its repeat index.

With PRECISION=p it keeps adding such rounds until the CI that judges each technique (its
speedup's against the baseline; the baseline's own mean, and every technique's where no
baseline runs) has a half-width within ±p of its value, from at least stats.MIN_RUNS runs
(and REPEATS), or until MAX_REPEATS rounds, or until another round would end past
TIME_BUDGET_MIN; then it says which techniques were resolved, which not, and why it stopped.
Only the runs of this invocation count (their run_ids, reported by each script), never rows
that were in RESULTS_FILE before. A technique skipped or failed in the first round is not
repeated and does not hold up the others.

usage: python -m utils.run_all baseline tf32 bf16 ...   (settings come from the environment,
as for the scripts: STEPS, MODEL, RESULTS_FILE, REPEATS, PRECISION, ...)
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from utils import checks, config, results, stats

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
FAILED = ("error", "oom")
DEFAULTS = {
    "REPEATS": "1",
    "PRECISION": "",
    "MAX_REPEATS": "10",
    "TIME_BUDGET_MIN": "30",
}  # the Makefile's, for direct use


def known_techniques():
    """The technique list: every script in scripts/, baseline first (the Makefile derives
    the same list; tests/test_make.py checks they agree)."""
    names = sorted(p.stem for p in SCRIPTS.glob("*.py"))
    return sorted(names, key=lambda name: name != "baseline")


def run_one(name, repeat):
    """Run scripts/<name>.py; return (status, one-line summary, run_id of its rows or None)."""
    with tempfile.TemporaryDirectory() as tmp:
        summary_file = Path(tmp) / "summary.json"
        env = {**os.environ, "SUMMARY_FILE": str(summary_file), "REPEAT": str(repeat)}
        proc = subprocess.run([sys.executable, str(SCRIPTS / f"{name}.py")], env=env)
        if summary_file.exists():
            summary = json.loads(summary_file.read_text())
            if proc.returncode == 0 or summary["status"] in FAILED:
                return summary["status"], summary["line"], summary["run_id"]
        return "error", f"{name}: error: exited with status {proc.returncode}", None


def settings():
    """REPEATS and the adaptive settings from the environment, checked:
    (repeats, precision or None, max_repeats, time budget in seconds)."""
    value = {name: os.environ.get(name) or default for name, default in DEFAULTS.items()}
    repeats = checks.integer("REPEATS", value["REPEATS"])
    precision = checks.optional(checks.number, "PRECISION", value["PRECISION"], 1)
    max_repeats = checks.integer("MAX_REPEATS", value["MAX_REPEATS"], stats.MIN_RUNS)
    budget_s = checks.number("TIME_BUDGET_MIN", value["TIME_BUDGET_MIN"]) * 60
    if precision is not None and max_repeats < repeats:
        raise checks.BadInput(
            f"MAX_REPEATS={max_repeats} is below REPEATS={repeats}: with PRECISION, REPEATS is the least"
        )
    return repeats, precision, max_repeats, budget_s


def judge(results_file, run_ids, precision, min_runs, rounds, max_rounds, elapsed_s, round_s, budget_s):
    """Read this invocation's rows back and apply the stopping rule: stats.adaptive_stop's
    (stop, why, resolved, unresolved), and the widths judged."""
    rows = results.read(results_file)
    progress = stats.judged_widths(stats.summary(rows[rows["run_id"].isin(run_ids)]))
    return (
        *stats.adaptive_stop(progress, precision, min_runs, rounds, max_rounds, elapsed_s, round_s, budget_s),
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


def main(names):
    unknown = [name for name in names if not (SCRIPTS / f"{name}.py").is_file()]
    if unknown or not names:
        given = " ".join(unknown) or "(none given)"
        print(f"all: error: unknown technique {given}; known: {' '.join(known_techniques())}", file=sys.stderr)
        return 2
    try:
        cfg = config.load("all", argv=[])  # one clear error for bad settings, not one per technique
        repeats, precision, max_repeats, budget_s = settings()
    except checks.BadInput as err:
        print(f"all: error: {err}", file=sys.stderr)
        return checks.EXIT_BAD_INPUT

    outcomes, run_ids, active, rounds, planned = [], [], list(names), 0, len(names) * repeats
    started, stopped = time.monotonic(), None
    try:
        while True:
            round_started = time.monotonic()
            measured = []
            for name in active:
                count = (
                    f"{len(outcomes) + 1}/{planned}"
                    if precision is None
                    else f"round {rounds + 1}, run {len(outcomes) + 1}"
                )
                print(
                    f"\n=== [{count}] {name}" + (f" (repeat {rounds})" if repeats > 1 or precision else ""), flush=True
                )
                status, line, run_id = run_one(name, rounds)
                outcomes.append((status, line))
                run_ids.append(run_id)
                if status == "ok":
                    measured.append(name)
            rounds += 1
            if precision is None:
                if rounds == repeats:
                    break
                continue
            if rounds == 1:
                active = measured  # skipped or failed in the first round: not repeated
            now = time.monotonic()
            stop, why, resolved, unresolved, progress = judge(
                cfg.results_file,
                run_ids,
                precision,
                max(repeats, stats.MIN_RUNS),
                rounds,
                max_repeats,
                now - started,
                now - round_started,
                budget_s,
            )
            print(
                f"\n=== after round {rounds}: resolved within ±{precision:.1%}: {_listed(resolved, progress)}; "
                f"not yet: {_listed(unresolved, progress)}",
                flush=True,
            )
            if stop:
                stopped = (why, resolved, unresolved, progress)
                break
    except KeyboardInterrupt:
        outcomes.append(("error", "interrupted: the technique running then wrote nothing"))
    except checks.BadInput as err:  # RESULTS_FILE changed under us between rounds
        outcomes.append(("error", f"adaptive repeats stopped: {err}"))

    print("\n=== summary")
    for status, line in outcomes:
        print(f"  {status:<8} {line}")
    if stopped:
        why, resolved, unresolved, progress = stopped
        not_measured = [name for name in names if name not in progress.index]
        print(f"adaptive: stopped after {rounds} round(s): {why}")
        print(f"  resolved     (±{precision:.1%}): {_listed(resolved, progress)}")
        print(f"  not resolved (±{precision:.1%}): {_listed(unresolved, progress)}")
        if not_measured:
            print(f"  not measured (skipped or failed): {' '.join(not_measured)}")
    failed = [line.split(":")[0] for status, line in outcomes if status in FAILED]
    counts = {s: sum(1 for status, _ in outcomes if status == s) for s in ("ok", "skipped")}
    print(
        f"all: {counts['ok']} ok, {counts['skipped']} skipped, {len(failed)} failed"
        + (f" ({' '.join(failed)})" if failed else "")
    )
    return 1 if failed else 0  # an interrupted or cut-short run is listed as an error too


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
