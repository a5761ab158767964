"""make ddp / make fsdp in this process: the launcher's checks, the ranks' outcome, and gradient
synchronisation under accumulation in a process group of one."""

import contextlib
import json
import socket
from unittest import mock

import pytest
import torch
import torch.distributed as dist
from helpers import rows_of, run_config, set_env
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.distributed.fsdp._fully_shard import _fsdp_param_group

from utils import results
from utils import techniques as t
from utils.drivers import launch, runner
from utils.measure import data
from utils.measure.train import build_run
from utils.techniques.parallel import World


def test_the_outcome_names_the_rank_that_failed(tmp_path):
    summary = tmp_path / "summary.json"
    (tmp_path / "summary.json.0").write_text(json.dumps({"status": "error", "line": "x: interrupted (rank 0)"}))
    (tmp_path / "summary.json.1").write_text(json.dumps({"status": "error", "line": "x: error: boom (rank 1)"}))
    outcome = runner.ranks_outcome(summary, 2, returncode=1, output="")
    assert outcome.status == "error" and outcome.run_id is None
    assert outcome.line == "x: error: boom (rank 1); 1 other rank(s) stopped by torchrun; nothing was written"
    (tmp_path / "summary.json.1").unlink()  # a rank that left nothing was killed: it comes first
    assert runner.ranks_outcome(summary, 2, 1, "").line.startswith("rank 1 stopped without a summary (killed?)")


def test_scaling_across_processes_draws_this_invocations_runs_only(results_file, tmp_path, monkeypatch, capsys):
    ddp = {"parallel": "ddp"}
    # another make scaling_gpus, of another model on 1, 3 and 4 processes, in the same file (the newer by its clock)
    other = [row for n in (1, 3, 4) for row in rows_of("baseline", 10.0 / n, run_id=f"other{n}", world_size=n,
                                                       model="gpt2", timestamp_utc="2026-11-24T00:00:00+00:00", **ddp)]
    results.append_rows(results_file, other)

    def launch_one(kind, technique, nproc, port, cfg, loss_check_on):  # 1 process: 100 ms a step, 2: 55 ms
        results.append_rows(results_file, rows_of("baseline", 100.0 - 45 * (nproc - 1), run_id=f"new{nproc}",
                                                  world_size=nproc, **ddp))
        return 0, f"new{nproc}"

    monkeypatch.setattr(launch, "launch", launch_one)
    cfg = mock.Mock(results_file=results_file)
    assert launch.scaling("ddp", "baseline", 2, None, cfg, tmp_path, "") == 0
    said = [line for line in capsys.readouterr().out.splitlines() if "process(es):" in line]
    assert said == ["scaling: 1 process(es): 5.1k tokens/s, efficiency 100%",
                    "scaling: 2 process(es): 9.3k tokens/s, efficiency 91%"]


def test_bad_launches_are_one_line_before_anything_starts(results_file, monkeypatch, capsys):
    set_env(monkeypatch, "RESULTS_FILE", str(results_file))
    set_env(monkeypatch, "DEVICE", "cpu")
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
            ({"T": "nope"}, "unknown T nope"),
            ({"T": "flash", "TECHNIQUE": "fused"}, "T=flash and TECHNIQUE=fused name two techniques"),
            # a part that runs in one process only, refused by its catalog entry before torchrun starts
            ({"T": "flash+step_in_backward"}, "flash+step_in_backward cannot run under ddp: step_in_backward steps"),
            ({"TECHNIQUE": "cudagraphs"}, "cudagraphs cannot run under ddp: cuda_graphs captures one process's"),
            ({"LOSS_CHECK": "2"}, "LOSS_CHECK must be an integer from 0 to 1"),
        ]
        for extra, expected in cases:
            with monkeypatch.context() as m:
                for name, value in extra.items():
                    set_env(m, name, value)
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
    cfg = run_config("t", steps=1, warmup=0, model="tiny", batch=2, seq=16, device="cpu", data="coinflip", seed=0,
                     lr=None, accum=accum, world=World(kind, 0, 0, 1), layers=2)
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


def test_the_parallel_loss_check_allows_a_bf16_loss_its_last_bit():
    # fp32 losses (autocast computes the cross-entropy in fp32): a thousandth of a nat, whatever the loss
    assert launch.tolerance("bf16-autocast", 5.03) == launch.tolerance("fp32", 0.2) == launch.LOSS_TOLERANCE
    # bf16 losses step by 2^-5 between 4 and 8 (8 significant bits), by 2^-8 between 0.5 and 1
    assert launch.tolerance("bf16-weights", 5.03) == 2 ** -5 and launch.tolerance("bf16-weights", 0.7) == 2 ** -8
    assert torch.tensor(5.03, dtype=torch.bfloat16).item() + 2 ** -5 == torch.tensor(5.06, dtype=torch.bfloat16)
    assert launch.tolerance("bf16-weights", 0.01) == launch.LOSS_TOLERANCE  # never under the fp32 tolerance
