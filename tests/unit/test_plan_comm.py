"""N GPUs' collectives planned: read from the fake process group, costed by NCCL's model on the
planned links, hidden behind compute or exposed; the plan prints them per GPU."""

import pytest
import torch
from helpers import plan_cfg, set_env

from utils import devices, registry
from utils.devices import nodes_for
from utils.plan import __main__ as plan_command
from utils.plan import comm, planner, timing
from utils.plan.config import Target
from utils.techniques.parallel import World

H100, PCIE = devices.by_key("h100-sxm"), devices.by_key("h100-pcie")
GIB = 2**30


def _op(name, phase, nbytes):
    return timing.Op(name, phase, "collective", 0, nbytes, torch.bfloat16, False)


def _compute(phase, ms, gpu=H100):
    # a memory-bound op of `ms` on `gpu`
    nbytes = int(ms / 1e3 * gpu.bandwidth_tbs * 1e12 * timing.MEMORY_EFFICIENCY)
    return timing.Op("add", phase, "memory", 0, nbytes, torch.bfloat16, False)


def test_a_collective_costs_what_its_link_and_size_say():
    gather = _op("all_gather", "forward", GIB)
    nvlink, pcie = (comm.collective_seconds(gather, gpu, 8) for gpu in (H100, PCIE))
    two_nodes = comm.collective_seconds(gather, H100, 16, nodes=2)
    assert 0 < nvlink < pcie and nvlink < two_nodes  # NVLink, then PCIe; the network between nodes
    # at a GiB the bandwidth term rules: twice the bytes, about twice the time; all-reduce moves twice an all-gather's
    assert comm.collective_seconds(_op("all_gather", "forward", 2 * GIB), H100, 8) == pytest.approx(2 * nvlink, 0.05)
    assert comm.collective_seconds(_op("all_reduce", "forward", GIB), H100, 8) == pytest.approx(2 * nvlink, 0.1)


def test_prefetched_all_gathers_hide_behind_compute_and_the_optimizer_waits_for_reductions():
    gather, scatter = (comm.collective_seconds(_op(n, "forward", GIB // 8), H100, 8) * 1e3
                       for n in ("all_gather", "reduce_scatter"))
    blocks = [op for _ in range(4) for op in (_op("all_gather", "forward", GIB // 8), _compute("forward", 10))]
    backward = [_compute("backward", 10), _op("reduce_scatter", "backward", GIB // 8)]
    hidden = comm.comm_time(blocks + backward + [_compute("optimizer", 1)], H100, 8)
    # only the first all-gather waits: the next is issued a block ahead, and 10 ms of compute hide it
    assert hidden.exposed_ms["forward"] == pytest.approx(gather, rel=1e-6)
    assert hidden.exposed_ms["backward"] == 0 and hidden.exposed_ms["optimizer"] == pytest.approx(scatter, rel=1e-6)
    assert hidden.total_ms == pytest.approx(4 * gather + scatter) and hidden.count == 5
    bare = comm.comm_time([_op("all_gather", "forward", GIB // 8)] * 4, H100, 8)  # nothing to hide behind
    assert bare.exposed_ms["forward"] == pytest.approx(4 * gather, rel=1e-6)


def test_ddp_buckets_are_reduced_as_backward_makes_them():
    ops = [_compute("forward", 5)] + [_compute("backward", 1) for _ in range(10)] + [_compute("optimizer", 1)]
    placed = comm.with_buckets(ops, [25 * 2**20] * 4, H100)
    reduces = [i for i, op in enumerate(placed) if op.kind == "collective"]
    assert len(reduces) == 4 and all(placed[i].phase == "backward" for i in reduces)
    assert reduces[0] < reduces[-1] - 3 and reduces[-1] == len(placed) - 2  # spread over backward, the last at its end


def test_an_fsdp_plan_times_its_collectives_and_make_plan_prints_them_per_gpu(results_file, monkeypatch, capsys):
    plan = planner.plan(registry.load_setup("baseline"), plan_cfg(World("fsdp", 0, 0, 4)), Target(H100))
    collectives = [op for op in plan.ops if op.kind == "collective"]
    assert {op.name for op in collectives} == {"all_gather", "reduce_scatter"}
    step = plan.time
    assert step.comm.count == len(collectives) and step.comm.total_ms > 0
    assert step.step_ms == pytest.approx(sum(step.ms.values()))  # the exposed part is in the phases
    one = planner.plan(registry.load_setup("baseline"), plan_cfg(World()), Target(H100))
    assert one.time.comm is None
    for name, value in {"RESULTS_FILE": str(results_file), "MODEL": "tiny", "TECHNIQUES": "baseline",
                        "PARALLEL": "fsdp", "NPROC": "4", "NODES": "2"}.items():
        set_env(monkeypatch, name, value)
    assert plan_command.main([]) == 0
    out = capsys.readouterr().out
    assert "per GPU, N GPUs (rank 0; NODES=2" in out and "scaling" in out


def test_nodes_that_do_not_divide_the_gpus_are_refused(results_file, monkeypatch, capsys):
    for name, value in {"RESULTS_FILE": str(results_file), "MODEL": "tiny", "TECHNIQUES": "baseline",
                        "PARALLEL": "fsdp", "NPROC": "4", "NODES": "3"}.items():
        set_env(monkeypatch, name, value)
    assert plan_command.main([]) == 2
    assert "NODES=3 does not divide the NPROC=4 GPUs planned" in capsys.readouterr().err
    assert not results_file.exists()


def test_more_gpus_a_node_than_a_board_holds_are_refused(results_file, monkeypatch, capsys):
    for name, value in {"RESULTS_FILE": str(results_file), "MODEL": "tiny", "TECHNIQUES": "baseline",
                        "PARALLEL": "fsdp", "NPROC": "24", "NODES": "2"}.items():
        set_env(monkeypatch, name, value)
    assert plan_command.main([]) == 2
    err = capsys.readouterr().err
    # 12 a node; the fewest nodes of at most 8 GPUs that divide 24: 3 (4 for 28: 7 a node)
    assert [nodes_for(n) for n in (1, 8, 12, 24, 28, 128)] == [1, 1, 2, 3, 4, 16] and nodes_for(2, at_least=4) == 2
    assert "NPROC=24 on NODES=2 is 12 GPUs a node" in err and "set NODES=3" in err
    assert not results_file.exists()
    set_env(monkeypatch, "NPROC", "28")
    assert plan_command.main([]) == 2 and "set NODES=4" in capsys.readouterr().err
