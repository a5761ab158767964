"""make tune end to end: a named GPU's answer (table, pruning, Pareto plot, the command), VERIFY on
this CPU (predicted against measured, the learning verdict), bad input refused with nothing written."""

from helpers import one_line, run_make


def _tune(tmp_path, **settings):
    return run_make("tune", results_file=tmp_path / "results.csv", TUNE_REPORT=tmp_path / "TUNE.md",
                    PLOTS_DIR=tmp_path / "plots", **settings)


def test_tune_names_the_fastest_fitting_setup_for_a_gpu(tmp_path):
    proc = _tune(tmp_path, MODEL="tiny", BATCH="4", SEQ="64", GPU="a100-40gb")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = (tmp_path / "TUNE.md").read_text()
    assert "**Run:** `make run T=" in report and "| rank | configuration |" in report
    assert "Left out, by reason:" in report and "conflict (the catalog refuses the pair)" in report
    assert "predicted" in report.lower() and "measured ms" not in report  # nothing measured, nothing claimed
    assert (tmp_path / "plots" / "tune_a100-40gb.png").stat().st_size > 0


def test_verify_measures_the_top_here_and_checks_the_winner_learns(tmp_path):
    proc = _tune(tmp_path, MODEL="tiny", BATCH="4", SEQ="64", STEPS="5", VERIFY="2", CONVERGENCE_STEPS="20",
                 TECHNIQUES="")
    report = (tmp_path / "TUNE.md").read_text()
    assert "| predicted rank | configuration | predicted ms | measured ms (median) |" in report, proc.stderr[-2000:]
    assert "**Measured fastest:** `make run T=" in report
    assert "still learns" in report or "does **not** learn" in report
    assert proc.returncode in (0, 1)
    rows = (tmp_path / "results.csv").read_text().splitlines()
    assert len(rows) > 2 * 5  # the measured runs' rows, appended as any run's


def test_bad_input_is_one_line_and_writes_nothing(tmp_path):
    for settings, said in (({"TECHNIQUES": "nope"}, "unknown technique"),
                           ({"GPUS": "a100-40gb h100-sxm", "VERIFY": "1", "GPU": "h100-sxm"}, "VERIFY"),
                           ({"GPU": "nope"}, "GPU must be one of")):
        proc = _tune(tmp_path, MODEL="tiny", **settings)
        assert proc.returncode == 2, (settings, proc.stderr)
        assert said in one_line(proc.stderr)
        assert not (tmp_path / "TUNE.md").exists()
