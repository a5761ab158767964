"""N GPUs planned on one CPU: FSDP2 and DDP on a fake process group."""

import pytest
import torch
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


def _collectives(plan):
    return [(op.name, op.dtype, op.bytes) for op in plan.ops if op.kind == "collective"]


def test_fsdp_under_bf16_autocast_gathers_the_blocks_in_bf16_and_reduces_gradients_in_fp32():
    cfg, bf16 = plan_cfg(World("fsdp", 0, 0, 4)), registry.load_setup("bf16")
    fp32_ops, gpu_ops, cpu_ops = (_collectives(p) for p in (
        planner.plan(registry.load_setup("baseline"), cfg), planner.plan(bf16, cfg),
        planner.plan(bf16, cfg, model_cuda=False)))
    gathers = [(dtype, nbytes) for name, dtype, nbytes in gpu_ops if name == "all_gather"]
    # the root's weights (embeddings, head) stay fp32: the residual stream with them; each block's come in bf16
    assert {dtype for dtype, _ in gathers} == {torch.float32, torch.bfloat16}
    halved = [n for (name, _, n), (_, dtype, half) in zip(fp32_ops, gpu_ops) if name == "all_gather"
              and dtype == torch.bfloat16 and half * 2 == n]
    assert len(halved) == sum(dtype == torch.bfloat16 for dtype, _ in gathers) > 0
    assert {dtype for name, dtype, _ in gpu_ops if name == "reduce_scatter"} == {torch.float32}
    # ranks on CPUs keep fp32 weights: a CPU's autocast runs layer_norm in the dtypes it is given; so does fp16
    fp16_ops = _collectives(planner.plan(registry.load_setup("fp16"), cfg))
    assert cpu_ops == fp32_ops == fp16_ops


def test_fsdp2s_gathers_and_sharded_gradients_are_allocated_on_its_own_streams():
    plan = planner.plan(registry.load_setup("baseline"), plan_cfg(World("fsdp", 0, 0, 4)))
    sizes = {}
    for _, nbytes, *pool in plan.events:
        if nbytes > 0 and pool:
            sizes.setdefault(pool[0], []).append(nbytes)
    # two side streams: the all-gather copy-in stream's buffers, the reduce-scatter stream's sharded gradients
    assert len(sizes) == 2 and all(name.startswith(allocator.STREAM) for name in sizes)
    grads = min(sizes.values(), key=sum)  # every parameter's gradient once a step, a quarter of each
    assert sum(grads) == pytest.approx(4 * plan.n_params / 4 * 2, rel=0.05)  # two tracked steps
    on_cpu = planner.plan(registry.load_setup("baseline"), plan_cfg(World("fsdp", 0, 0, 4)), model_cuda=False)
    assert not any(pool for _, _, *pool in on_cpu.events)  # a CPU's allocator has no streams
