"""make ddp / make fsdp / make scaling_gpus on this CPU: torchrun, gloo, 2 processes, tiny model;
a killed rank stops the run."""

import subprocess
import sys

import pytest
from helpers import TINY, add_technique, copy_suite, run_make, tiny_env

from utils import results

TWO = {"NPROC": "2", "STEPS": "3"}


def _rows(results_file, parallel):
    df = results.read(results_file)
    return df[(df["parallel"] == parallel) & (df["status"] == "ok")]


@pytest.mark.parametrize("kind, technique", [("ddp", "baseline"), ("fsdp", "sgd")])
def test_a_parallel_run_appends_rows_and_trains_as_one_process(results_file, kind, technique):
    # sgd under fsdp: with plain SGD a gradient summed instead of averaged (pytorch#162338)
    # changes the update, so the loss check would see it; Adam's update would hide it
    proc = run_make(kind, f"TECHNIQUE={technique}", results_file=results_file, **TWO)
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-1500:]
    assert "loss check: largest |loss - single process, 2 x B=2 accumulated|" in proc.stdout
    assert ": match" in proc.stdout
    rows = _rows(results_file, kind)
    assert rows["run_id"].nunique() == 1 and len(results.read(results_file)) == len(rows)  # reference kept apart
    assert set(rows["world_size"]) == {2} and set(rows["backend"]) == {"gloo"}
    measured = rows[rows["phase"] == "measured"]
    tokens = 2 * int(TINY["BATCH"]) * int(TINY["SEQ"])  # both ranks' tokens, the slowest rank's time
    expected = tokens / (measured["step_ms"] / 1e3)
    assert measured["tokens_per_s"].to_numpy() == pytest.approx(expected, rel=1e-3, abs=0.05)
    assert measured["device_tokens_per_s"].to_numpy() == pytest.approx(measured["tokens_per_s"] / 2, abs=0.1)
    parts = measured[["forward_ms", "backward_ms", "optimizer_ms"]].sum(axis=1)
    assert parts.to_numpy() == pytest.approx(measured["step_ms"].to_numpy(), abs=2e-4)  # one rank's parts, whole


def test_fsdp_with_each_block_compiled_trains_as_one_process(results_file):
    # what make tune recommends on N GPUs: FSDP2's blocks, each compiled apart (the hooks outside the graphs)
    proc = run_make("fsdp", "TECHNIQUE=compile", "COMPILE_SCOPE=blocks", results_file=results_file, **TWO)
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-1500:]
    assert ": match" in proc.stdout
    rows = _rows(results_file, "fsdp")
    assert len(rows) and set(rows["compile_scope"]) == {"blocks"}


def test_scaling_draws_tokens_per_s_at_each_world_size(results_file, tmp_path):
    proc = run_make("scaling_gpus", "KIND=ddp", f"PLOTS_DIR={tmp_path}", results_file=results_file, **TWO)
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-1500:]
    assert "scaling: 1 process(es):" in proc.stdout and "efficiency 100%" in proc.stdout
    assert "scaling: 2 process(es):" in proc.stdout
    assert set(_rows(results_file, "ddp")["world_size"]) == {1, 2}
    assert (tmp_path / "scaling_ddp_baseline.png").read_bytes()[:4] == b"\x89PNG"


def test_a_killed_rank_stops_the_run_and_writes_nothing(tmp_path):
    baseline = copy_suite(tmp_path)
    killer = baseline.replace(
        "    t.adamw(run)\n",
        "    t.adamw(run)\n"
        "    if os.environ['RANK'] == '1':  # rank 1 dies in its second forward\n"
        "        run.model.register_forward_hook(die_on_second_call)\n",
    ).replace('"""\n\n', '"""\n\nimport os\n', 1)
    killer = killer.replace("def setup(run):", "CALLS = []\n\n\ndef die_on_second_call(*_):\n    CALLS.append(1)\n"
              "    if len(CALLS) == 2:\n        os.kill(os.getpid(), 9)\n\n\ndef setup(run):")
    add_technique(tmp_path, "killrank", killer)
    results_file = tmp_path / "results.csv"
    results.append_rows(results_file, [{**dict.fromkeys(results.COLUMNS, ""), "technique": "earlier", "status": "ok"}])
    before = results_file.read_bytes()
    env = tiny_env(results_file, **TWO)
    cmd = ["make", "--no-print-directory", "ddp", "TECHNIQUE=killrank", f"PYTHON={sys.executable}"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode != 0
    # under load torchrun may stop rank 0 before it leaves its summary too: both are then named
    assert "ddp: error: " in proc.stderr and "rank 1 stopped without a summary (killed?)" in proc.stderr
    assert results_file.read_bytes() == before
