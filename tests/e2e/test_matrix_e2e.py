"""make matrix end to end: a measured 2 x 2 with repeats."""

from helpers import run_make

from utils import results


def test_a_measured_2x2_with_repeats_runs_each_cell_interleaved(results_file, tmp_path):
    proc = run_make("matrix", "FACTORS=checkpointing swiglu", "OPTIMIZERS=adamw", "REPEATS=2", "MAXBATCH=0",
                    f"MATRIX_REPORT={tmp_path / 'M.md'}", results_file=results_file, STEPS="2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = results.read(results_file).drop_duplicates("run_id")
    order = ["baseline", "swiglu", "checkpointing", "swiglu+checkpointing"]
    assert list(runs["technique"]) == order * 2 and list(runs["repeat"]) == [0] * 4 + [1] * 4
    text = (tmp_path / "M.md").read_text()
    assert "| `checkpointing` | +" in text and "[" in text.split("## Main effects")[1]  # CIs from the repeats
