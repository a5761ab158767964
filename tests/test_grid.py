"""make grid and make lrsweep end to end on a tiny CPU setting; their bad input, the learning
settings' and the sweep's verdict in this process."""

import numpy as np
import pytest
from helpers import run_make

from utils import results
from utils import techniques as t
from utils.drivers import grid, lrsweep
from utils.measure import train
from utils.report import __main__ as report_command


def _one_line(text):
    lines = [line for line in text.strip().splitlines() if line and not line.startswith("make: ***")]
    assert len(lines) == 1, text
    return lines[0]


@pytest.mark.e2e
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


@pytest.mark.parametrize(
    "env, said",
    [
        ({"DATA": "markov", "TARGET_LOSS": "1.2"}, "can never be reached"),
        ({"GRID_LAYERS": "0"}, "GRID_LAYERS must be a positive integer"),
        ({"GRID_MODELS": "tiny gpt5"}, "GRID_MODELS: unknown model gpt5"),
        ({"GRID_OPTIMIZERS": "adam nope"}, "unknown technique in GRID_OPTIMIZERS: nope"),
        ({"GRID_LRS": "sgd=0.3"}, "GRID_LRS names sgd, which is not in GRID_OPTIMIZERS"),
        ({"GRID_LRS": "adam=fast"}, "GRID_LRS entry 'adam=fast' must be a positive number"),
        ({"EVAL_EVERY": "0"}, "EVAL_EVERY=0 turns evaluation off"),
    ],
)
def test_a_bad_grid_setting_stops_the_grid_before_anything_runs(results_file, tmp_path, monkeypatch, capsys, env,
                                                                said):
    monkeypatch.setattr(grid.repeats, "run_rounds", lambda *a: pytest.fail("a cell ran"))
    for name, value in {"RESULTS_FILE": str(results_file), "GRID_OPTIMIZERS": "adam", "GRID_LAYERS": "1",
                        "GRID_REPORT": str(tmp_path / "GRID.md"), "DEVICE": "cpu", **env}.items():
        monkeypatch.setenv(name, value)
    assert grid.main(["run"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("grid: error: ") and said in line
    assert not results_file.exists() and not (tmp_path / "GRID.md").exists()


@pytest.mark.e2e
def test_make_lrsweep_names_the_best_lr(results_file):
    proc = run_make("lrsweep", "TECHNIQUE=sgd", "LRS=1e-6 0.1", results_file=results_file)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "lrsweep: best LR for sgd: 0.1 (best validation loss" in proc.stdout
    assert "an end of the sweep" in proc.stdout and "make grid GRID_LRS='sgd=0.1'" in proc.stdout
    assert sorted(results.read(results_file).drop_duplicates("run_id")["lr"]) == [1e-6, 0.1]


def test_the_report_refuses_a_target_below_the_floor(results_file, tmp_path, monkeypatch, capsys):
    results.append_rows(
        results_file,
        [
            {
                **dict.fromkeys(results.COLUMNS, ""),
                "technique": "baseline",
                "status": "ok",
                "phase": "eval",
                "data": "coinflip",
                "loss_floor": 0.6365,
                "val_loss": 0.9,
            }
        ],
    )
    for name, value in {"RESULTS_FILE": results_file, "TARGET_LOSS": "0.5", "REPORT": tmp_path / "R.md",
                        "PLOTS_DIR": tmp_path}.items():
        monkeypatch.setenv(name, str(value))
    assert report_command.main() == 2
    assert "TARGET_LOSS=0.5 is below the entropy of DATA=coinflip" in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "R.md").exists()


def _bin(tmp_path, name, size):
    path = tmp_path / name
    path.write_bytes(np.zeros(size, dtype=np.uint8).tobytes())
    return str(path)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--eval-every", "9"], "EVAL_EVERY=9 is larger than STEPS=3"),
        (["--target-loss", "0.5"], "it can never be reached"),
        (["--target-loss", "0.7", "--eval-every", "0"], "EVAL_EVERY=0 turns evaluation off"),
        (["--data", "{odd}"], "not a whole number of 2-byte"),
        (["--data", "{small}"], "its validation split holds 10 tokens, too few for one batch"),
        (["--layers", "0"], "LAYERS must be a positive integer"),
    ],
)
def test_bad_learning_settings_stop_before_training(tmp_path, results_file, capsys, args, expected):
    results.append_rows(results_file, [{**dict.fromkeys(results.COLUMNS, ""), "technique": "x", "status": "ok"}])
    before = results_file.read_bytes()
    files = {"odd": _bin(tmp_path, "odd.bin", 4097), "small": _bin(tmp_path, "small.txt", 100)}
    argv = [
        "--steps",
        "3",
        "--model",
        "tiny",
        "--device",
        "cpu",
        "--batch",
        "2",
        "--seq",
        "16",
        "--results-file",
        str(results_file),
        *(a.format(**files) for a in args),
    ]
    with pytest.raises(SystemExit) as exit_:
        train.main(lambda run: t.adamw(run), name="badtest", argv=argv)
    assert exit_.value.code == train.EXIT_BAD_INPUT
    assert expected in _one_line(capsys.readouterr().err)
    assert results_file.read_bytes() == before


def test_the_sweep_passes_over_a_diverged_lr(results_file):
    def run(lr, losses):
        return [
            {
                **dict.fromkeys(results.COLUMNS, ""),
                "run_id": f"r{lr}",
                "technique": "sgd",
                "status": "ok",
                "phase": "eval",
                "step": i,
                "train_steps": 10 * i,
                "lr": lr,
                "val_loss": loss,
            }
            for i, loss in enumerate(losses)
        ]

    # through the file, as a real sweep reads it: a diverged run writes nan, read back as text
    results.append_rows(
        results_file, run(0.01, [5.0, 3.0, 2.5]) + run(0.1, [5.0, 2.0, 1.9]) + run(1.0, [5.0, 1.5, float("nan")])
    )
    df = results.read(results_file)
    table = lrsweep.sweep_table(df, set(df["run_id"]))
    assert table["final"].isna().tolist() == [False, False, True]
    assert "best LR for sgd: 0.1 (best validation loss 1.9000)" in lrsweep.verdict(table, "sgd")
