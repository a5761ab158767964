"""The Makefile: help, all going on past a failure, init_results, reset."""

import textwrap

from conftest import run_make

from utils import results


def test_help_lists_every_target_and_variable(results_file):
    proc = run_make("help", results_file=results_file)
    assert proc.returncode == 0
    for word in [
        "all",
        "plots",
        "reset",
        "clean",
        "init_results",
        "test",
        "STEPS=50",
        "PLOTSPREFIX",
        "RESULTS_FILE",
        "MODEL=auto",
        "BATCH",
        "SEQ",
        "DEVICE",
        "WARMUP",
        "PYTHON",
    ]:
        assert word in proc.stdout, word


def test_all_goes_on_past_a_failing_technique(results_file, tmp_path):
    # a bitsandbytes whose 8-bit optimizer breaks mid-step: 8bit fails, the rest still run
    fake = tmp_path / "fake" / "bitsandbytes"
    (fake / "optim").mkdir(parents=True)
    (fake / "__init__.py").write_text("from bitsandbytes import optim\n")
    (fake / "optim" / "__init__.py").write_text(
        textwrap.dedent("""
        import torch
        class AdamW8bit(torch.optim.AdamW):
            def step(self, closure=None):
                raise RuntimeError("simulated kernel failure")
    """)
    )
    proc = run_make(
        "all", "TECHNIQUES=baseline 8bit fused", results_file=results_file, PYTHONPATH=str(tmp_path / "fake")
    )
    assert proc.returncode != 0
    summary = proc.stdout.split("=== summary")[1]
    assert "8bit: error: RuntimeError: simulated kernel failure" in summary
    assert "all: 2 ok, 0 skipped, 1 failed (8bit)" in summary
    statuses = results.read(results_file).drop_duplicates("technique").set_index("technique")["status"].to_dict()
    assert statuses == {"baseline": "ok", "8bit": "error", "fused": "ok"}


def test_init_results_and_reset_keep_a_backup(results_file, tmp_path):
    assert run_make("init_results", results_file=results_file).returncode == 0
    assert results_file.read_text() == results.HEADER
    results.append_rows(results_file, [{**{c: "" for c in results.COLUMNS}, "technique": "x", "status": "ok"}])
    before = results_file.read_bytes()
    proc = run_make("reset", f"PLOTS_DIR={tmp_path / 'plots'}", results_file=results_file)
    assert proc.returncode == 0, proc.stderr
    backups = list(tmp_path.glob("results.csv.*.bak"))
    assert not results_file.exists() and len(backups) == 1 and backups[0].read_bytes() == before


def test_repeats_run_interleaved_and_are_labelled(results_file):
    proc = run_make("all", "TECHNIQUES=baseline fused", "REPEATS=2", results_file=results_file, STEPS="2")
    assert proc.returncode == 0, proc.stderr
    runs = results.read(results_file).drop_duplicates("run_id")
    assert list(zip(runs["technique"], runs["repeat"])) == [
        ("baseline", 0),
        ("fused", 0),
        ("baseline", 1),
        ("fused", 1),
    ]
    proc = run_make("all", "REPEATS=0", results_file=results_file)
    assert proc.returncode == 2 and "REPEATS must be a positive integer" in proc.stderr
