"""N GPUs planned on one CPU: FSDP2 and DDP on a fake process group."""

import pytest
from helpers import plan_cfg, set_env

from utils import registry, results
from utils.plan import __main__ as plan_command
from utils.plan import allocator, planner
from utils.techniques.parallel import World


def test_fsdp_shards_what_one_gpu_holds_whole():
    setup = registry.load_setup("baseline")
    one, two, eight = (planner.plan(setup, plan_cfg(w))
                       for w in (World(), World("fsdp", 0, 0, 2), World("fsdp", 0, 0, 8)))
    # the weights, gradients and AdamW's states are split across the ranks (the root's stay whole in forward)
    assert one.breakdown["optimizer"] > 1.8 * two.breakdown["optimizer"] > 3 * eight.breakdown["optimizer"]
    assert eight.peak_mib < two.peak_mib < one.peak_mib


def test_ddp_holds_one_gpus_step_and_its_gradient_buckets():
    setup = registry.load_setup("baseline")
    one, ddp = (planner.plan(setup, plan_cfg(w), model_cuda=False) for w in (World(), World("ddp", 0, 0, 4)))
    assert ddp.peak_bytes == one.peak_bytes  # the step itself is one GPU's
    alone, with_buckets = (allocator.replay(p.events).peak_allocated for p in (one, ddp))
    # DDP's buckets: a flat fp32 copy of every gradient, kept beside the gradients themselves
    assert with_buckets - alone == pytest.approx(4 * one.n_params, rel=0.02)


def _plan(monkeypatch, results_file, **env):
    for name, value in {"RESULTS_FILE": str(results_file), "MODEL": "tiny", "TECHNIQUES": "baseline", **env}.items():
        set_env(monkeypatch, name, value)
    return plan_command.main([])


def test_make_plan_answers_per_gpu(results_file, monkeypatch, capsys):
    assert _plan(monkeypatch, results_file, PARALLEL="fsdp", NPROC="8") == 0
    assert "rank 0 of 8 GPUs (fsdp)" in capsys.readouterr().out
    row = results.read(results_file).iloc[-1]
    assert (row["parallel"], row["world_size"], row["backend"], row["kind"]) == ("fsdp", 8, "nccl", "predicted")


@pytest.mark.parametrize(
    "env, message",
    [
        ({"PARALLEL": "fsdp", "NPROC": "1025"}, "NPROC=1025: the planner plans up to 1024 ranks"),
        ({"PARALLEL": "fsdp", "NPROC": "eight"}, "NPROC must be a positive integer"),
        ({"PARALLEL": "fsdp", "NPROC": "1"}, "one rank is not sharded or replicated"),
        ({"PARALLEL": "zero3", "NPROC": "8"}, "PARALLEL must be one of ddp, fsdp"),
        ({"NPROC": "8"}, "NPROC=8 needs PARALLEL=ddp or PARALLEL=fsdp"),
    ],
)
def test_bad_worlds_are_one_line_and_write_nothing(results_file, monkeypatch, capsys, env, message):
    assert _plan(monkeypatch, results_file, **env) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("plan: error:") and message in lines[0]
    assert not results_file.exists()
