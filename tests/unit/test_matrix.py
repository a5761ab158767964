"""make matrix: the design checked before anything runs, main effects and interactions on
synthetic cells with a known answer, a 2 x 2 planned in this process."""

import pandas as pd
import pytest
from helpers import set_env, tiny_env

from utils import results
from utils.analysis import matrix
from utils.drivers import matrix as matrix_command


def _set(monkeypatch, results_file, tmp_path, **env):
    for name, value in {**tiny_env(results_file), "MATRIX_REPORT": str(tmp_path / "M.md"), **env}.items():
        set_env(monkeypatch, name, str(value))


@pytest.mark.parametrize(
    "env, said",
    [
        ({"FACTORS": "checkpointing lion"}, "FACTORS: lion is an optimizer: put it in OPTIMIZERS"),
        ({"OPTIMIZERS": "adamw flash"}, "OPTIMIZERS: flash is not an optimizer"),
        ({"FACTORS": "checkpointing nope"}, "unknown technique in BASE or FACTORS: nope"),
        ({"FACTORS": "bf16 fp16"}, "each choose the precision"),  # a cell that cannot exist
        ({"BASE": "stack", "FACTORS": "flash"}, "stack already includes flash"),
        ({"FACTORS": "flash flash"}, "FACTORS and OPTIMIZERS must each name a technique once"),
        ({"FACTORS": "bf16 flash checkpointing swiglu accum compile tf32", "MATRIX_MAX_CELLS": "64"},
         "7 factors x 1 optimizer(s) make 128 cells, above MATRIX_MAX_CELLS=64"),
        ({"FACTORS": "checkpointing", "PLAN": "1", "GPU": "a100"}, "GPU must be one of"),
        ({"FACTORS": "checkpointing", "MAXBATCH": "yes"}, "MAXBATCH must be an integer from 0 to 1"),
    ],
)
def test_a_bad_design_is_one_line_before_anything_runs(results_file, tmp_path, monkeypatch, capsys, env, said):
    _set(monkeypatch, results_file, tmp_path, **env)
    monkeypatch.setattr(matrix_command.repeats, "run_rounds", lambda *a: pytest.fail("a cell ran"))
    assert matrix_command.main() == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("matrix: error: ") and said in lines[0], lines
    assert not results_file.exists() and not (tmp_path / "M.md").exists()


def _synthetic(runs=1):
    """A 2 x 2 x {adamw, lion} table: memory = 100 - 30 a - 20 b - 10 a b - 5 lion (a = checkpointing,
    b = flash), step = 10 + 4 a - 2 b; each run's figures spread +-1 around the cell's."""
    cells = matrix.cells(["bf16"], ["checkpointing", "flash"], ["adamw", "lion"], lambda parts: "+".join(parts))
    rows = []
    for cell in cells:
        a, b = cell.on
        lion = cell.optimizer == "lion"
        memory, step = 100 - 30 * a - 20 * b - 10 * a * b - 5 * lion, 10 + 4 * a - 2 * b
        spread = [0.0] if runs == 1 else [-1.0, 0.0, 1.0][:runs]
        rows.append({"cell": cell, "memory_mib": memory, "step_ms": step, "runs": runs,
                     "per_run": {"memory_mib": [memory + s for s in spread], "step_ms": [step + s for s in spread]}})
    return pd.DataFrame(rows)


def test_main_effects_and_interactions_have_the_known_answer():
    main, pairs = matrix.effects(_synthetic(), ["checkpointing", "flash"], "memory_mib")
    # checkpointing saves 30 without flash, 40 with it: on average 35, and 10 more together
    assert main["checkpointing"][0] == pytest.approx(-35) and main["flash"][0] == pytest.approx(-25)
    assert main["lion"][0] == pytest.approx(-5)
    (off, on), low, high = pairs["checkpointing", "flash"]
    assert (off, on) == (pytest.approx(-30), pytest.approx(-40)) and low != low  # one run: no CI
    step, step_pairs = matrix.effects(_synthetic(), ["checkpointing", "flash"], "step_ms")
    assert step["checkpointing"][0] == pytest.approx(4) and step_pairs["checkpointing", "flash"][0] == (4, 4)


def test_with_repeats_every_effect_has_a_ci_around_it():
    main, pairs = matrix.effects(_synthetic(runs=3), ["checkpointing", "flash"], "memory_mib")
    for name, truth in {"checkpointing": -35, "flash": -25, "lion": -5}.items():
        point, low, high = main[name]
        assert low <= truth <= high and point == pytest.approx(truth)
    (off, on), low, high = pairs["checkpointing", "flash"]
    assert low <= -10 <= high


def test_a_planned_2x2_marks_each_cell_and_what_it_predicts(results_file, tmp_path, monkeypatch, capsys):
    _set(monkeypatch, results_file, tmp_path, BASE="bf16", FACTORS="checkpointing flash", OPTIMIZERS="adamw",
         PLAN="1", GPU_MEMORY_GIB="40", MODEL="tiny", SEQ="128", BATCH="4")
    assert matrix_command.main() == 0
    text = (tmp_path / "M.md").read_text()
    cells = [line for line in text.split("## Main effects")[0].splitlines() if line.startswith("| `")]
    names = [line.split("`")[1] for line in cells]
    assert names == ["bf16", "flash", "bf16+checkpointing", "flash+checkpointing"]  # bf16+flash is flash
    assert [line.count("✓") for line in cells] == [0, 1, 1, 2]
    assert "peak allocated MiB (predicted)" in text and "predicted on fake tensors" in text
    df = results.read(results_file)
    assert set(df["kind"]) == {"predicted"} and set(df["technique"]) == set(names)
    peaks = df.set_index("technique")["mem_peak_mib"]
    assert peaks["bf16+checkpointing"] < peaks["bf16"] and peaks["flash"] < peaks["bf16"]  # what each factor saves
    assert "matrix: 4 cells, 4 plans" in capsys.readouterr().out
    # the plans' roofline times, labelled predicted, and each cell's device total against the GPU's 40 GiB
    assert "| fits | step ms (predicted) |" in text and "Δ step time ms (predicted)" in text
    steps = df.set_index("technique")["step_ms"]
    for name, line in zip(names, cells):
        assert f"| yes | {steps[name]:.2f} |" in line


def test_a_planned_cell_past_the_gpus_memory_is_marked_not_to_fit():
    from types import SimpleNamespace

    from utils.report.matrix import markdown

    table = _synthetic()
    # device totals 500 MiB + 5 per allocated MiB: the plain cell's (1,000 MiB) passes a 0.95 GiB card's 972.8 MiB,
    # the cells with checkpointing (850 MiB at most) fit
    table["device_total_mib"] = 500 + 5 * table["memory_mib"]
    table["per_run"] = [{**r, "device_total_mib": [t]} for r, t in zip(table["per_run"], table["device_total_mib"])]
    table["tokens_per_s"], table["max_batch"] = 1000.0, None
    cfg = SimpleNamespace(model="tiny", layers=2, batch=4, seq=128)
    text = markdown(table, ["checkpointing", "flash"], ["bf16"], cfg, "planned", True, capacity_gib=0.95)
    cells = [line for line in text.split("## Main effects")[0].splitlines() if line.startswith("| `")]
    fits = {line.split("`")[1]: line.split("|")[7].strip() for line in cells}
    assert fits["bf16"] == "**no**" and fits["bf16+checkpointing"] == fits["bf16+checkpointing+flash"] == "yes"
    assert "within the GPU's 0.95 GiB" in text


def test_an_effect_that_needs_a_cell_without_a_figure_is_not_computed():
    # checkpointing alone ran out of memory: averaging the other cells would mix flash on and off and give
    # checkpointing's +4 ms as a different number; only the effects that do not need that cell remain
    table = _synthetic(runs=3)
    lost = [c.name for c in table["cell"]].index("bf16+checkpointing")
    table.loc[lost, ["step_ms", "runs", "status"]] = [float("nan"), 0, "oom"]
    table.at[lost, "per_run"] = {"memory_mib": table.at[lost, "per_run"]["memory_mib"], "step_ms": []}
    step, step_pairs = matrix.effects(table, ["checkpointing", "flash"], "step_ms")
    assert all(point != point and low != low for point, low, _ in step.values())  # every main effect needs it
    (off, on), low, high = step_pairs["checkpointing", "flash"]
    assert off != off and on == pytest.approx(4) and low != low  # with flash on, the cells are all there
    memory, _ = matrix.effects(table, ["checkpointing", "flash"], "memory_mib")  # memory was measured: exact
    assert memory["checkpointing"][0] == pytest.approx(-35) and memory["checkpointing"][1] <= -35
    assert matrix.without_figure(table, "step_ms") == [("bf16+checkpointing", "oom")]
    assert matrix.without_figure(table, "memory_mib") == []


def test_the_report_names_the_cells_without_a_figure_and_not_a_metric_never_measured(results_file, tmp_path):
    from types import SimpleNamespace

    from helpers import rows_of

    from utils.report.matrix import markdown

    cells = matrix.cells(["bf16"], ["checkpointing", "flash"], ["adamw"], lambda parts: "+".join(parts))
    rows = []
    for cell in cells:
        a, b = cell.on
        for run in range(3):
            rows += (rows_of(cell.name, 20.0 - 10 * b + 2 * a + run, steps=4, run_id=f"{cell.name}-{run}")
                     if cell.name != "bf16+checkpointing" else
                     rows_of(cell.name, 0, status="oom", reason="out of memory", run_id=f"oom-{run}"))
    results.append_rows(results_file, rows)
    table = matrix.table(results.read(results_file), cells)
    assert table.set_index(table["cell"].map(lambda c: c.name)).loc["bf16+checkpointing", "status"] == "oom"
    text = markdown(table, ["checkpointing", "flash"], ["bf16"], SimpleNamespace(model="tiny", layers=2, batch=4,
                    seq=128), "cpu", False)
    effects = text.split("## Main effects")[1]
    assert "| `checkpointing` | – | – |" in effects  # memory: no cell has one (not tracked here), step: one cell lost
    assert "- no step time: `bf16+checkpointing` (oom)" in effects and "no peak memory" not in effects
