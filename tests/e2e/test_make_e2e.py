"""make all through the Makefile: going on past a failure, repeats interleaved, a new script."""

import subprocess
import sys
import textwrap

from helpers import add_technique, copy_suite, run_make, tiny_env

from utils import results


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


def test_a_new_row_and_script_is_all_it_takes(tmp_path):
    # a copy of the suite with one more row in the catalog and its script: make help, make <name> and make all know it
    baseline = copy_suite(tmp_path)
    dummy = baseline.replace('"""baseline:', '"""dummy: a made-up technique.', 1)
    add_technique(tmp_path, "dummy", dummy)
    results_file = tmp_path / "results.csv"

    def make(*args):
        cmd = ["make", "--no-print-directory", *args, f"PYTHON={sys.executable}"]
        return subprocess.run(cmd, env=tiny_env(results_file), capture_output=True, text=True, cwd=tmp_path)

    assert "dummy          a made-up technique." in make("help").stdout
    assert make("dummy").returncode == 0
    proc = make("all", "TECHNIQUES=dummy")
    assert proc.returncode == 0 and "dummy: ok" in proc.stdout, proc.stderr
    assert set(results.read(results_file)["technique"]) == {"dummy"}
