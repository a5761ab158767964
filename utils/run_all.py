"""`make all`: run techniques one after another, each in a fresh process, go on past any
that fails, then print one line per run and exit non-zero only if one failed.

With REPEATS=N each technique runs N times, interleaved (A B C A B C ...), so that drift of
the machine (clocks, temperature, other load) spreads evenly over the techniques instead of
landing on whichever ran last. Each run's rows carry its repeat index.

usage: python -m utils.run_all baseline tf32 bf16 ...   (settings come from the environment,
as for the scripts: STEPS, MODEL, RESULTS_FILE, REPEATS, ...)
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from utils import config

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
FAILED = ("error", "oom")


def known_techniques():
    """The technique list: every script in scripts/, baseline first (the Makefile derives
    the same list; tests/test_make.py checks they agree)."""
    names = sorted(p.stem for p in SCRIPTS.glob("*.py"))
    return sorted(names, key=lambda name: name != "baseline")


def run_one(name, repeat):
    """Run scripts/<name>.py; return (status, one-line summary)."""
    with tempfile.TemporaryDirectory() as tmp:
        summary_file = Path(tmp) / "summary.json"
        env = {**os.environ, "SUMMARY_FILE": str(summary_file), "REPEAT": str(repeat)}
        proc = subprocess.run([sys.executable, str(SCRIPTS / f"{name}.py")], env=env)
        if summary_file.exists():
            summary = json.loads(summary_file.read_text())
            if proc.returncode == 0 or summary["status"] in FAILED:
                return summary["status"], summary["line"]
        return "error", f"{name}: error: exited with status {proc.returncode}"


def main(names):
    unknown = [name for name in names if not (SCRIPTS / f"{name}.py").is_file()]
    if unknown or not names:
        print(
            f"all: error: unknown technique {' '.join(unknown) or '(none given)'}; "
            f"known: {' '.join(known_techniques())}",
            file=sys.stderr,
        )
        return 2
    try:
        config.load("all", argv=[])  # one clear error for bad settings, not one per technique
        repeats = config.positive_int("REPEATS", os.environ.get("REPEATS") or "1")
    except config.ConfigError as err:
        print(f"all: error: {err}", file=sys.stderr)
        return 2

    plan = [(repeat, name) for repeat in range(repeats) for name in names]  # interleaved
    outcomes = []
    try:
        for i, (repeat, name) in enumerate(plan, 1):
            print(f"\n=== [{i}/{len(plan)}] {name}" + (f" (repeat {repeat})" if repeats > 1 else ""), flush=True)
            outcomes.append(run_one(name, repeat))
    except KeyboardInterrupt:
        outcomes.append(("error", "interrupted: the technique running then wrote nothing"))

    print("\n=== summary")
    for status, line in outcomes:
        print(f"  {status:<8} {line}")
    failed = [line.split(":")[0] for status, line in outcomes if status in FAILED]
    counts = {s: sum(1 for status, _ in outcomes if status == s) for s in ("ok", "skipped")}
    print(
        f"all: {counts['ok']} ok, {counts['skipped']} skipped, {len(failed)} failed"
        + (f" ({' '.join(failed)})" if failed else "")
    )
    return 1 if failed or len(outcomes) < len(plan) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
