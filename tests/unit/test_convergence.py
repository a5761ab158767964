"""Does it still learn: the tiny GPT reaches the coin's floor, evaluation stays out of the
step times, time to target and the drift flag on synthetic curves, the grid's table and
answer, and a golden loss curve that catches a change to the math."""

import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from helpers import run_config

from utils import results
from utils import techniques as t
from utils.analysis import convergence, grid
from utils.measure import data, evaluate
from utils.measure import loop as bench
from utils.measure.evaluate import Evaluator
from utils.measure.train import build_run

GOLDEN = Path(__file__).parents[1] / "golden" / "baseline_tiny_cpu.json"


def _baseline(steps, batch=2, seq=16, lr=None, seed=1337):
    cfg = run_config("baseline", steps=steps, warmup=0, model="tiny", batch=batch, seq=seq, device="cpu",
                     data="coinflip", seed=seed, lr=lr)
    return build_run(cfg, lambda run: (t.strict_fp32(run), t.adamw(run)))


def test_a_tiny_gpt_gets_within_002_nats_of_the_coins_floor():
    run = _baseline(20, batch=8, seq=64, lr=3e-3)
    evaluator = Evaluator(run, data.validation_batches(run.cfg, 16), every=10, total_steps=20)
    bench.measure(run, data.batches(run.cfg), 20, 0, evaluator)
    assert evaluator.records[0]["val_loss"] > 3  # the untrained model: ln(256) territory
    assert abs(evaluator.records[-1]["val_loss"] - data.COIN_FLIP_ENTROPY) < 0.02


class FakeClock:
    """perf_counter that only moves when someone sleeps on it: timing without noise."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class Sleepy(torch.nn.Module):
    """The model, whose forward takes `train_s` on the clock with gradients, `eval_s` without."""

    def __init__(self, model, clock, train_s, eval_s):
        super().__init__()
        self.model, self.clock, self.train_s, self.eval_s = model, clock, train_s, eval_s

    def forward(self, x, y):
        self.clock.sleep(self.train_s if torch.is_grad_enabled() else self.eval_s)
        return self.model(x, y)


def test_evaluation_time_never_enters_step_times_or_training_wall_clock(monkeypatch):
    clock = FakeClock()
    for module in (bench, evaluate):
        monkeypatch.setattr(module, "time", SimpleNamespace(perf_counter=clock.perf_counter))
    run = _baseline(4)
    # a training step takes 10 ms, an evaluation (one batch) 200 ms
    run.model = run.train_model = Sleepy(run.model, clock, train_s=0.010, eval_s=0.200)
    evaluator = Evaluator(run, data.validation_batches(run.cfg, 1), every=2, total_steps=6)
    warm, measured = bench.measure(run, data.batches(run.cfg), 4, 2, evaluator)
    assert [r["train_steps"] for r in evaluator.records] == [0, 2, 4, 6]
    assert [r["eval_ms"] for r in evaluator.records] == pytest.approx([200] * 4)
    assert warm.step_ms + measured.step_ms == pytest.approx([10] * 6)
    assert (warm.wall_ms, measured.wall_ms) == pytest.approx((20, 40))  # three evaluations fell inside
    assert [r["train_s"] for r in evaluator.records] == pytest.approx([0, 0.02, 0.04, 0.06])
    assert run.model.training  # back to training mode after each evaluation


def test_the_golden_loss_curve_of_the_tiny_cpu_baseline():
    # a change that alters the math (init, data, optimizer, loss) moves these; regenerate
    # deliberately with: python tests/unit/test_convergence.py --update-golden
    golden = json.loads(GOLDEN.read_text())
    run = _baseline(golden["steps"])
    _, measured = bench.measure(run, data.batches(run.cfg), golden["steps"], 0)
    assert measured.loss == pytest.approx(golden["loss"], abs=1e-4)


def _frame(rows):
    return pd.DataFrame(rows).reindex(columns=list(results.COLUMNS))  # every column, as results.read gives


def _eval_rows(technique, losses, seconds_per_step=1.0, every=10, run_id=None, **extra):
    return [
        {
            "run_id": run_id or technique,
            "technique": technique,
            "status": "ok",
            "phase": "eval",
            "step": i,
            "train_steps": i * every,
            "train_s": i * every * seconds_per_step,
            "val_loss": loss,
            "train_loss": loss + 0.1,
            "loss_floor": 0.6365,
            **extra,
        }
        for i, loss in enumerate(losses)
    ]


def test_time_to_target_on_synthetic_curves():
    df = _frame(
        _eval_rows("slow_steps", [2.0, 1.5, 1.0, 0.8], seconds_per_step=0.5) + _eval_rows("never", [2.0, 1.9, 1.8])
    )
    runs = convergence.time_to_target(df, 1.0).set_index("technique")
    assert runs.loc["slow_steps", ["reached", "steps", "seconds"]].tolist() == [True, 20, 10.0]
    assert not runs.loc["never", "reached"] and runs.loc["never", "trained_steps"] == 20
    cells = convergence.target_summary(df, 1.0).apply(convergence.target_cell, axis=1)
    assert cells.to_dict() == {"slow_steps": "20 steps, 10.00 s", "never": "not reached in 20 steps"}


def _training_rows(technique, losses, dtype="fp32", optimizer="torch.optim.AdamW", warmup=2, skipped=(), adapter=None):
    base = {
        "run_id": technique,
        "technique": technique,
        "status": "ok",
        "repeat": 0,
        "dtype": dtype,
        "optimizer": optimizer,
        "lr": 6e-4,
        "mlp": "gelu",
        "accum": 1,
        "seed": 1337,
        "data": "coinflip",
        **({"adapter": adapter} if adapter else {}),
    }
    return [
        {**base, "phase": "warmup" if i < warmup else "measured", "step": i if i < warmup else i - warmup, "loss": loss,
         "scaler_skipped": i in skipped}
        for i, loss in enumerate(losses)
    ]


def test_drift_is_flagged_beyond_the_tolerance_of_its_precision():
    curve = [5.0, 3.0, 1.5, 0.9, 0.7, 0.66]
    df = _frame(
        _training_rows("baseline", curve)
        + _training_rows("fused", [v + 1e-5 for v in curve])  # fp32 reordering: within 1e-3
        + _training_rows("compile", [*curve[:4], curve[4] + 0.01, curve[5]])  # one step off by 0.01: flagged
        + _training_rows("bf16", [v + 0.01 for v in curve], dtype="bf16-autocast")  # bf16: within 0.05
        + _training_rows("sgd", [v + 1.0 for v in curve], optimizer="torch.optim.SGD")  # other math: not asked
        + _training_rows("lora", [v + 1.0 for v in curve], adapter="lora r=8 on q_proj,v_proj")  # other weights: nor
    )
    drift = convergence.drift(df)
    assert set(drift.index) == {"fused", "compile", "bf16"}
    assert drift.loc["compile", "max_abs"] == pytest.approx(0.01) and drift.loc["compile", "flagged"]
    assert not drift.loc["fused", "flagged"] and not drift.loc["bf16", "flagged"]
    assert "beyond tolerance" in convergence.drift_cell(drift.loc["compile"])


def test_a_technique_run_twice_at_one_repeat_index_is_two_runs_each_compared():
    # make all run again: every run has repeat 0, and the steps of two runs must not be merged
    curve = [5.0, 3.0, 1.5, 0.9, 0.7, 0.66]
    again = [{**row, "run_id": "baseline-2"} for row in _training_rows("baseline", curve)]
    second = [{**row, "run_id": "fused-2"} for row in _training_rows("fused", [*curve[:5], curve[5] + 0.01])]
    df = _frame(_training_rows("baseline", curve) + again + _training_rows("fused", curve) + second)
    drift = convergence.drift(df)
    assert drift.loc["fused", "max_abs"] == pytest.approx(0.01) and drift.loc["fused", "flagged"]


def test_fp16_is_compared_only_until_its_gradscaler_skips_an_update():
    # the GradScaler skips step 0 (its first scale overflows): from step 1 on fp16 is one update
    # behind, a difference of training, not of arithmetic
    curve = [5.0, 3.0, 1.5, 0.9, 0.7, 0.66]
    behind = [5.0 + 1e-3, 5.0, 3.0, 1.5, 0.9, 0.7]
    df = _frame(_training_rows("baseline", curve) + _training_rows("fp16", behind, dtype="fp16-autocast", skipped={0})
                + _training_rows("late", [*curve[:3], 9.0, 9.0, 9.0], dtype="fp16-autocast", skipped={4}))
    drift = convergence.drift(df)
    assert drift.loc["fp16", "max_abs"] == pytest.approx(1e-3) and not drift.loc["fp16", "flagged"]
    assert drift.loc["fp16", "compared_to"] == 0
    assert convergence.drift_cell(drift.loc["fp16"]) == (
        "0.001 (within 0.05) over step 0 only: the GradScaler skipped step 0's update, so later steps differ by a "
        "whole update"
    )
    # a skip late in the run still leaves the steps before it compared, and a real drift there flagged
    assert drift.loc["late", "compared_to"] == 4 and drift.loc["late", "flagged"]


def _grid_run(model, layers, optimizer, val_losses, seconds_per_step, memory):
    rows = _eval_rows(
        optimizer,
        val_losses,
        seconds_per_step,
        run_id=f"{model}{layers}{optimizer}",
        model=model,
        layers=layers,
        lr=1e-3,
        n_params=1e5,
        data="markov",
    )
    return [{**rows[0], "phase": "measured", "peak_rss_mib": memory}, *rows]


def test_the_grid_table_and_answer_from_synthetic_runs():
    df = _frame(
        _grid_run("lstm", 1, "sgd", [5.0, 3.0, 2.5], 0.1, 300.0)
        + _grid_run("tiny", 2, "adam", [5.0, 2.0, 1.6, 1.7], 0.2, 350.0)  # best GPT, at its 3rd evaluation
        + _grid_run("tiny", 1, "adam", [5.0, 2.2, 1.8], 0.1, 320.0)
        + _grid_run("lstm", 1, "adam", [5.0, 1.7, 1.65], 0.1, 310.0)  # best LSTM, and the quickest
    )
    table = grid.best_evaluations(df)
    assert list(zip(table["arch"], table["layers"], table["optimizer"])) == [
        ("GPT", 1, "adam"),
        ("GPT", 2, "adam"),
        ("LSTM", 1, "adam"),
        ("LSTM", 1, "sgd"),
    ]
    assert table["exp"].tolist() == [3, 2, 4, 1]  # numbered in the order they ran
    gpt2 = table.iloc[1]
    assert (gpt2["epoch"], gpt2["at_step"], gpt2["val_ppl"]) == (2, 20, pytest.approx(math.exp(1.6)))
    assert gpt2["train_ppl"] == pytest.approx(math.exp(1.7)) and gpt2["memory_mib"] == 350.0
    lines = grid.best_table(grid.cells(table)).splitlines()[2:]
    assert [line.startswith("| **") for line in lines] == [False, True, True, False]  # best per architecture
    answer = grid.answer(table, df)
    # equal budget (2 s, the shortest run's): the LSTM with Adam is lowest by then (1.65; the
    # 2-layer GPT, at 0.2 s a step, has only reached 2.0); its 1.6 later is the best of all
    assert "**Wall-clock:** LSTM with 1 layer and adam (exp 4)" in answer
    assert "**Generalisation:** GPT with 2 layers and adam (exp 2): the lowest validation perplexity, 4.953" in answer
    answer = grid.answer(table, df, target=1.75)  # LSTM + Adam: 1.7 after 10 steps of 0.1 s
    assert "**Wall-clock:** LSTM with 1 layer and adam (exp 4): validation loss 1.75 after 1.00 s" in answer


def _repeat(rows, run_id, repeat, step_ms=None):
    return [{**row, "run_id": run_id, "repeat": repeat, **({"step_ms": step_ms} if step_ms and
                                                            row["phase"] == "measured" else {})} for row in rows]


def test_a_cell_is_the_median_of_its_runs_and_a_stalled_run_is_flagged_and_left_out():
    quick = _grid_run("lstm", 1, "adam", [5.0, 1.7, 1.65], 0.1, 310.0)
    slow = _grid_run("tiny", 1, "adam", [5.0, 1.6, 1.5], 0.1, 320.0)
    steady = [{**quick[0], "phase": "measured", "step": i, "step_ms": 10.0} for i in range(20)]
    stalled = [*steady[:19], {**steady[19], "step_ms": 6000.0}]  # one step of 6 s: the machine was taken
    df = _frame(_repeat(quick + steady, "q0", 0) + _repeat(quick + stalled, "q1", 1)
                + [{**r, "val_loss": r["val_loss"] + 0.1} for r in _repeat(quick + steady, "q2", 2)]
                + _repeat(slow + steady, "s0", 0))
    runs = grid.best_evaluations(df)
    assert runs.set_index("run_id")["stalls"].to_dict() == {"q0": 0, "q1": 1, "q2": 0, "s0": 0}
    cells = grid.cells(runs).set_index("model")
    assert cells.loc["lstm", "runs"] == 3 and cells.loc["lstm", "stalled"] == 1
    assert cells.loc["lstm", "val_ppl"] == pytest.approx(math.exp(1.65))  # the median of 1.65, 1.65, 1.75
    assert "3 (⚠ 1 stalled: left out of the wall-clock answer)" in grid.best_table(grid.cells(runs))
    answer = grid.answer(runs, df)
    assert "1 run(s) with a step over 10× their median" in answer
    assert "median of 3 runs" not in answer.split("Generalisation")[1]  # the GPT's one run is the best


def test_a_target_below_the_floor_is_refused():
    df = _frame(_eval_rows("baseline", [2.0, 1.0]))
    df["data"] = "coinflip"
    with pytest.raises(convergence.TargetError, match="can never be reached"):
        convergence.check_target(df, 0.5)
    convergence.check_target(df, 0.7)
    with pytest.raises(convergence.TargetError, match="positive number"):
        convergence.parse_target("abc")


if __name__ == "__main__" and sys.argv[1:] == ["--update-golden"]:
    steps = 20
    run = _baseline(steps)
    _, measured = bench.measure(run, data.batches(run.cfg), steps, 0)
    GOLDEN.write_text(
        json.dumps(
            {
                "what": "training loss per step of scripts/baseline.py's setup: MODEL=tiny BATCH=2 SEQ=16 SEED=1337 "
                "DATA=coinflip WARMUP=0 LR=auto (6e-4), DEVICE=cpu, fp32",
                "torch": torch.__version__,
                "steps": steps,
                "loss": [round(v, 6) for v in measured.loss],
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {GOLDEN}")
