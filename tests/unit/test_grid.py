"""make grid and make lrsweep in this process: their bad input, the learning settings' and the
sweep's verdict."""

import numpy as np
import pytest
from helpers import set_env

from utils import results
from utils import techniques as t
from utils.drivers import grid, lrsweep
from utils.measure import train
from utils.report import __main__ as report_command


def _one_line(text):
    lines = [line for line in text.strip().splitlines() if line and not line.startswith("make: ***")]
    assert len(lines) == 1, text
    return lines[0]


@pytest.mark.parametrize(
    "env, said",
    [
        ({"DATA": "markov", "TARGET_LOSS": "1.2"}, "can never be reached"),
        ({"GRID_LAYERS": "0"}, "GRID_LAYERS must be a positive integer"),
        ({"GRID_MODELS": "tiny gpt5"}, "GRID_MODELS: unknown model gpt5"),
        ({"GRID_OPTIMIZERS": "adam nope"}, "unknown technique in GRID_OPTIMIZERS: nope"),
        ({"GRID_OPTIMIZERS": "adam bf16"}, "GRID_OPTIMIZERS: bf16 is not an optimizer"),
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
        set_env(monkeypatch, name, value)
    assert grid.main(["run"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("grid: error: ") and said in line
    assert not results_file.exists() and not (tmp_path / "GRID.md").exists()


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
        set_env(monkeypatch, name, str(value))
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
