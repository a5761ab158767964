"""A combination through make: it runs under its canonical name and a conflict is refused."""

from helpers import run_make

from utils import results


def test_make_runs_a_combination_by_its_canonical_name(results_file):
    proc = run_make("run", "T=lion+bf16+checkpointing", results_file=results_file, STEPS="2")
    assert proc.returncode == 0, proc.stderr
    assert "lion+bf16+checkpointing: runs as bf16+checkpointing+lion" in proc.stdout
    rows = results.read(results_file)
    assert set(rows["technique"]) == {"bf16+checkpointing+lion"} and set(rows["checkpointing"]) == {True}
    proc = run_make("lion+8bit", results_file=results_file)
    assert proc.returncode == 2 and "each choose the optimizer" in proc.stderr and "Traceback" not in proc.stderr
