"""Every technique end to end through `make all`, on a tiny CPU configuration (make test-e2e)."""

import math

import pytest
from helpers import TINY, run_make

from utils import results
from utils.registry import known as known_techniques

TECHNIQUES = known_techniques()
SKIPPED_ON_CPU = {"tf32", "cudagraphs", "offload"}  # a CUDA tensor-core mode; CUDA graph capture; GPU -> host


@pytest.fixture(scope="module")
def all_run(tmp_path_factory):
    results_file = tmp_path_factory.mktemp("all") / "results.csv"
    proc = run_make("all", f"TECHNIQUES={' '.join(TECHNIQUES)}", results_file=results_file)
    return proc, results.read(results_file), results_file


def test_make_all_succeeds_with_a_line_per_technique(all_run):
    proc, _, _ = all_run
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = proc.stdout.split("=== summary")[1]
    for name in TECHNIQUES:
        assert f" {name}: " in summary
    assert f"all: {len(TECHNIQUES) - len(SKIPPED_ON_CPU)} ok, {len(SKIPPED_ON_CPU)} skipped, 0 failed" in summary


@pytest.mark.parametrize("name", TECHNIQUES)
def test_each_technique_appends_well_formed_rows(all_run, name):
    _, df, _ = all_run
    rows = df[df["technique"] == name]
    assert rows["run_id"].nunique() == 1
    if name in SKIPPED_ON_CPU:
        assert rows["status"].tolist() == ["skipped"] and "CUDA" in rows["reason"].iloc[0]
        return
    assert set(rows["status"]) == {"ok"}
    # EVAL_EVERY=auto is 1 step at STEPS=3: an evaluation before training and after every step
    trained = int(TINY["WARMUP"]) + int(TINY["STEPS"])
    evals = rows[rows["phase"] == "eval"]
    assert evals["train_steps"].tolist() == list(range(trained + 1)) and evals["val_loss"].map(math.isfinite).all()
    rows = rows[rows["phase"] != "eval"]
    assert rows["phase"].value_counts().to_dict() == {"measured": int(TINY["STEPS"]), "warmup": int(TINY["WARMUP"])}
    measured = rows[rows["phase"] == "measured"]
    assert measured["step"].tolist() == list(range(int(TINY["STEPS"])))
    assert (measured["step_ms"] > 0).all() and measured["loss"].map(math.isfinite).all()
    tokens = int(TINY["BATCH"]) * int(TINY["SEQ"]) * measured["accum"].to_numpy()
    assert (measured["wall_tokens_per_s"] > 0).all() and measured["wall_tokens_per_s"].nunique() == 1
    assert measured["tokens_per_s"].to_numpy() == pytest.approx(
        tokens / (measured["step_ms"].to_numpy() / 1e3),
        rel=1e-3,
        abs=0.05,  # tokens/s is rounded to 0.1
    )
    for column in (
        "model",
        "n_params",
        "dtype",
        "attention",
        "optimizer",
        "device",
        "torch",
        "git_sha",
        "host",
        "timestamp_utc",
    ):
        assert rows[column].notna().all(), column
    assert (rows["peak_rss_mib"] > 0).all()
    phases = measured[["forward_ms", "backward_ms", "optimizer_ms"]].sum(axis=1).to_numpy()
    assert phases == pytest.approx(measured["step_ms"].to_numpy(), abs=2e-4)  # rounding to 4 decimals
    assert (measured["tflops"] > 0).all() and measured["mfu"].isna().all()  # a CPU has no peak in the table


WHAT_RAN = {  # technique -> columns that must say what actually ran
    "baseline": {
        "dtype": "fp32",
        "attention": "manual",
        "optimizer": "torch.optim.AdamW",
        "fused": False,
        "compiled": False,
        "checkpointing": False,
    },
    "bf16": {"dtype": "bf16-autocast", "attention": "manual"},
    "fp16": {"dtype": "fp16-autocast", "optimizer": "torch.optim.AdamW"},
    "accum": {"accum": 4, "dtype": "fp32"},  # the Makefile's ACCUM default
    "swiglu": {"mlp": "swiglu", "dtype": "fp32"},
    "geglu": {"mlp": "geglu", "dtype": "fp32"},
    "flash": {"dtype": "bf16-autocast", "attention": "sdpa:flash"},
    "fused": {"optimizer": "torch.optim.AdamW", "fused": True},
    "8bit": {"optimizer": "bitsandbytes.optim.AdamW8bit", "fused": False},
    "lion": {"optimizer": "bitsandbytes.optim.Lion", "lr": 6e-4 / 3},
    "checkpointing": {"checkpointing": True, "attention": "manual"},
    "compile": {"compiled": True, "compile_mode": "default", "compile_scope": "model", "dtype": "fp32"},
    "stack": {
        "dtype": "bf16-autocast",
        "attention": "sdpa:flash",
        "fused": True,
        "compiled": True,
        "compile_mode": "default",
        "mlp": "gelu",
        "accum": 1,
        "cuda_graphs": False,
    },
    "sgd": {"optimizer": "torch.optim.SGD"},
    "momentum": {"optimizer": "torch.optim.SGD"},
    "adam": {"optimizer": "torch.optim.Adam"},
    "adamw": {"optimizer": "torch.optim.AdamW", "fused": False},
}


@pytest.mark.parametrize("name", WHAT_RAN)
def test_rows_record_what_actually_ran(all_run, name):
    _, df, _ = all_run
    row = df[df["technique"] == name].iloc[0]
    for column, expected in WHAT_RAN[name].items():
        assert row[column] == pytest.approx(expected) if isinstance(expected, float) else row[column] == expected, (
            column
        )


def test_make_plots_from_the_run(all_run, tmp_path):
    _, _, results_file = all_run
    proc = run_make("plots", "PLOTSPREFIX=t_", f"PLOTS_DIR={tmp_path}", results_file=results_file)
    assert proc.returncode == 0, proc.stderr
    for name in ("steptime_lines", "steptime_box", "bootstrap_means", "relative_heatmap", "speedup_bars"):
        assert (tmp_path / f"t_{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_make_report_from_the_run(all_run, tmp_path):
    _, _, results_file = all_run
    proc = run_make("report", f"REPORT={tmp_path / 'REPORT.md'}", f"PLOTS_DIR={tmp_path}", results_file=results_file)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "REPORT.md").read_text()
    for name in TECHNIQUES:
        assert f"| `{name}` |" in text
    assert "no CUDA" in text and "**Fastest:**" in text


def test_make_compare_and_profile(all_run, tmp_path):
    _, _, results_file = all_run
    proc = run_make("compare", "A=sgd", "B=adam", f"PLOTS_DIR={tmp_path}", results_file=results_file)
    assert proc.returncode == 0, proc.stderr
    assert "sgd - adam: mean" in proc.stdout and (tmp_path / "timediff_sgd_vs_adam.png").exists()
    proc = run_make("profile", "TECHNIQUE=adam", f"PLOTS_DIR={tmp_path}", results_file=results_file)
    assert proc.returncode == 0, proc.stderr
    table = (tmp_path / "profile_adam.csv").read_text().splitlines()
    assert table[0].startswith("operator,calls_per_step,self_cpu_ms_per_step") and len(table) > 10
    assert (tmp_path / "profile_adam.png").exists() and "Self CPU time total" in (
        tmp_path / "profile_adam.txt"
    ).read_text()
