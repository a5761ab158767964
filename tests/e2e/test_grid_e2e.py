"""make grid and make lrsweep end to end on a tiny CPU setting: the grid's table, answer and
figures, the sweep's best LR."""

from helpers import run_make

from utils import results


def test_make_grid_writes_its_table_answer_and_figures(results_file, tmp_path):
    grid = [
        "GRID_MODELS=tiny lstm",
        "GRID_LAYERS=1",
        "GRID_OPTIMIZERS=adam",
        "GRID_LRS=adam=3e-3",
        "DATA=markov",
        f"GRID_REPORT={tmp_path / 'GRID.md'}",
        f"PLOTS_DIR={tmp_path}",
    ]
    proc = run_make("grid", *grid, results_file=results_file)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = (tmp_path / "GRID.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| exp ")]
    assert [("GPT" in r, "LSTM" in r, r.startswith("| **")) for r in rows] == [(True, False, True), (False, True, True)]
    assert "0.003" in rows[0] and "**Wall-clock:**" in text and "**Generalisation:**" in text
    for figure in ("grid_tiny_1L.png", "grid_lstm_1L.png"):
        assert (tmp_path / figure).read_bytes()[:4] == b"\x89PNG" and f"]({figure})" in text
    df = results.read(results_file)
    assert set(df["model"]) == {"tiny", "lstm"} and set(df["layers"]) == {1} and set(df["lr"]) == {3e-3}


def test_make_lrsweep_names_the_best_lr(results_file):
    proc = run_make("lrsweep", "TECHNIQUE=sgd", "LRS=1e-6 0.1", results_file=results_file)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "lrsweep: best LR for sgd: 0.1 (best validation loss" in proc.stdout
    assert "an end of the sweep" in proc.stdout and "make grid GRID_LRS='sgd=0.1'" in proc.stdout
    assert sorted(results.read(results_file).drop_duplicates("run_id")["lr"]) == [1e-6, 0.1]
