"""make ddp / make fsdp / make scaling_gpus on this CPU: torchrun, gloo, 2 processes, tiny model
(end to end); the launcher's checks, the ranks' outcome and gradient synchronisation under
accumulation in this process."""

import contextlib
import json
import socket
import subprocess
import sys
from unittest import mock

import pytest
import torch.distributed as dist
from helpers import TINY, copy_suite, run_make, tiny_env
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.distributed.fsdp._fully_shard import _fsdp_param_group

from utils import results
from utils import techniques as t
from utils.drivers import launch, runner
from utils.measure import data
from utils.measure.config import RunConfig
from utils.measure.train import build_run
from utils.techniques.parallel import World

TWO = {"NPROC": "2", "STEPS": "3"}


def _rows(results_file, parallel):
    df = results.read(results_file)
    return df[(df["parallel"] == parallel) & (df["status"] == "ok")]


@pytest.mark.e2e
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


@pytest.mark.e2e
def test_scaling_draws_tokens_per_s_at_each_world_size(results_file, tmp_path):
    proc = run_make("scaling_gpus", "KIND=ddp", f"PLOTS_DIR={tmp_path}", results_file=results_file, **TWO)
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-1500:]
    assert "scaling: 1 process(es):" in proc.stdout and "efficiency 100%" in proc.stdout
    assert "scaling: 2 process(es):" in proc.stdout
    assert set(_rows(results_file, "ddp")["world_size"]) == {1, 2}
    assert (tmp_path / "scaling_ddp_baseline.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.e2e
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
    (tmp_path / "scripts" / "killrank.py").write_text(killer)
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


def test_the_outcome_names_the_rank_that_failed(tmp_path):
    summary = tmp_path / "summary.json"
    (tmp_path / "summary.json.0").write_text(json.dumps({"status": "error", "line": "x: interrupted (rank 0)"}))
    (tmp_path / "summary.json.1").write_text(json.dumps({"status": "error", "line": "x: error: boom (rank 1)"}))
    outcome = runner.ranks_outcome(summary, 2, returncode=1, output="")
    assert outcome.status == "error" and outcome.run_id is None
    assert outcome.line == "x: error: boom (rank 1); 1 other rank(s) stopped by torchrun; nothing was written"
    (tmp_path / "summary.json.1").unlink()  # a rank that left nothing was killed: it comes first
    assert runner.ranks_outcome(summary, 2, 1, "").line.startswith("rank 1 stopped without a summary (killed?)")


def test_bad_launches_are_one_line_before_anything_starts(results_file, monkeypatch, capsys):
    monkeypatch.setenv("RESULTS_FILE", str(results_file))
    monkeypatch.setenv("DEVICE", "cpu")
    with socket.socket() as busy:
        busy.bind(("localhost", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cases = [
            ({"NPROC": "64"}, "NPROC=64 but this machine has"),
            ({"NPROC": "0"}, "NPROC must be a positive integer, got '0'"),
            ({"PORT": str(port)}, f"PORT={port} is in use"),
            ({"PORT": "70000"}, "PORT must be an integer from 1 to 65535"),
            ({"TECHNIQUE": "nope"}, "unknown TECHNIQUE nope"),
            ({"LOSS_CHECK": "2"}, "LOSS_CHECK must be an integer from 0 to 1"),
        ]
        for extra, expected in cases:
            with monkeypatch.context() as m:
                for name, value in extra.items():
                    m.setenv(name, value)
                assert launch.main(["ddp"]) == 2
            lines = capsys.readouterr().err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("ddp: error:") and expected in lines[0], (extra, lines)
    assert launch.main(["nccl"]) == 2 and "unknown parallel kind 'nccl'" in capsys.readouterr().err
    assert not results_file.exists()


@pytest.fixture
def one_rank(tmp_path):
    """A process group of this process alone: DDP and FSDP2 wrap and reduce as with several."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _reductions_per_step(kind, accum, sync_every_micro_batch=False):
    """Gradient reductions in one optimizer step of `accum` micro-batches: DDP's all-reduces
    (counted by a comm hook) or FSDP2's reduce-scatters (its foreach_reduce calls)."""
    cfg = RunConfig("t", 1, 0, "tiny", 2, 16, "cpu", "coinflip", 0, None, "unused.csv", accum=accum,
                    world=World(kind, 0, 0, 1), layers=2)
    run = build_run(cfg, lambda r: (t.strict_fp32(r), t.adamw(r), t.accumulate(r)))
    if sync_every_micro_batch:  # what the step did before: no no_sync
        run.no_sync = contextlib.nullcontext
    calls = []
    if kind == "ddp":
        def hook(state, bucket):
            calls.append(1)
            return allreduce_hook(dist.group.WORLD, bucket)

        run.train_model.register_comm_hook(None, hook)
        counting = contextlib.nullcontext()
    else:
        reduce = _fsdp_param_group.foreach_reduce
        counting = mock.patch.object(_fsdp_param_group, "foreach_reduce",
                                     lambda *a, **k: calls.append(1) or reduce(*a, **k))
    batches = data.batches(cfg)
    with counting:
        run.step(run, [next(batches) for _ in range(accum)])
    return len(calls)


@pytest.mark.parametrize("kind", ["ddp", "fsdp"])
def test_accumulation_synchronises_gradients_once_per_optimizer_step(one_rank, kind):
    once = _reductions_per_step(kind, accum=1)  # DDP: one bucket; FSDP2: one per sharded block and the root
    assert once >= 1
    assert _reductions_per_step(kind, accum=4) == once
    # the traffic it saves: at least one reduction per micro-batch without it (DDP re-buckets after its first)
    assert _reductions_per_step(kind, accum=4, sync_every_micro_batch=True) >= 4 * once
