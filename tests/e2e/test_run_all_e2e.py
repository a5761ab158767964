"""make all with CI_HALF_WIDTH end to end: the rounds it runs and why it stops."""

from helpers import run_make

from utils import results


def test_make_all_with_precision_stops_by_itself_and_says_why(results_file):
    proc = run_make(
        "all", "TECHNIQUES=baseline tf32 adamw", "CI_HALF_WIDTH=0.5", "MAX_REPEATS=3", results_file=results_file,
        STEPS="3"
    )
    assert proc.returncode == 0, proc.stderr
    summary = proc.stdout.split("=== summary")[1]
    assert "adaptive: stopped after 3 round(s): " in summary and "not measured (skipped or failed): tf32" in summary
    runs = results.read(results_file).drop_duplicates("run_id")
    assert list(zip(runs["technique"], runs["repeat"])) == [
        ("baseline", 0),
        ("tf32", 0),
        ("adamw", 0),
        ("baseline", 1),
        ("adamw", 1),
        ("baseline", 2),
        ("adamw", 2),
    ]
