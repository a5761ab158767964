"""The CUDA caching allocator's model on traces with known answers, and on a real plan's trace."""

import dataclasses
import time
from collections import Counter

import pytest
from helpers import ROOT

from utils import checks, devices, registry, settings
from utils.plan import __main__ as plan_command
from utils.plan import allocator, device, planner
from utils.plan.config import Target, load_config

MIB = 2**20


def _events(*steps):
    """('a', name, MiB) / ('f', name) steps -> a trace of (key, bytes)."""
    sizes, out = {}, []
    for step in steps:
        if step[0] == "a":
            sizes[step[1]] = int(step[2] * MIB)
            out.append((step[1], sizes[step[1]]))
        else:
            out.append((step[1], -sizes[step[1]]))
    return out


def test_sizes_are_rounded_and_segments_sized_as_the_allocator_does():
    assert allocator.round_size(1) == 512 and allocator.round_size(513) == 1024
    assert allocator.allocation_size(100) == 2 * MIB  # small pool: a 2 MiB segment
    assert allocator.allocation_size(5 * MIB) == 20 * MIB  # 1 - 10 MiB: a 20 MiB segment, split
    assert allocator.allocation_size(int(10.5 * MIB)) == 12 * MIB  # large: rounded up to 2 MiB
    one = allocator.replay([("x", 100)])
    assert (one.peak_allocated, one.peak_reserved) == (512, 2 * MIB)
    # two 5 MiB tensors share one 20 MiB segment: the second is served by the first's remainder
    two = allocator.replay(_events(("a", "x", 5), ("a", "y", 5)))
    assert (two.peak_allocated, two.peak_reserved) == (10 * MIB, 20 * MIB)


def test_best_fit_takes_the_smallest_cached_block_and_splits_only_past_a_mebibyte():
    trace = _events(("a", "big", 30), ("a", "small", 12), ("f", "big"), ("f", "small"), ("a", "x", 11.5))
    state = allocator.CachingAllocator()
    live = {}
    for key, nbytes in trace:
        if nbytes > 0:
            live[key] = state.malloc(nbytes)
        else:
            state.free(live.pop(key))
    # the 12 MiB block is the best fit; its 0.5 MiB remainder is not split off (large pool: > 1 MiB only)
    assert live["x"].size == 12 * MIB and state.allocated == 12 * MIB and state.reserved == 42 * MIB


def test_a_growing_request_fragments_the_cache_and_expandable_segments_avoid_it():
    # the pattern of the allocator's own note: a size, freed, then a slightly larger one
    trace = _events(("a", "n", 40), ("f", "n"), ("a", "n+1", 42))
    native = allocator.replay(trace)
    assert native.peak_reserved == 82 * MIB  # the cached 40 MiB segment cannot serve 42: a second segment
    expandable = allocator.replay(trace, mode="expandable_segments")
    assert expandable.peak_reserved == 60 * MIB  # the free tail grows by one 20 MiB page


def test_a_graph_pool_keeps_its_own_blocks_and_a_full_device_releases_the_default_pools_cache():
    graph = [("g", 60 * MIB, "graph"), ("g", -60 * MIB)]
    # freed in the graph's pool, its 60 MiB segment stays there: the default pool cudaMallocs anew
    shared = allocator.replay(graph + _events(("a", "x", 60)))
    assert (shared.peak_allocated, shared.peak_reserved) == (60 * MIB, 120 * MIB)
    assert allocator.replay(_events(("a", "g", 60), ("f", "g"), ("a", "x", 60))).peak_reserved == 60 * MIB
    # the graph pool finds no room: the default pool's wholly free segment is released for it
    full = allocator.replay(_events(("a", "x", 60), ("f", "x")) + [("g", 80 * MIB, "graph")], capacity=100 * MIB)
    assert full.oom_at is None and full.retries == 1 and full.peak_reserved == 80 * MIB
    # the graph's own cache is never released: the default pool runs out of memory
    held = allocator.replay(graph + _events(("a", "x", 50)), capacity=100 * MIB)
    assert held.oom_at == 2


def test_a_side_streams_blocks_serve_only_it_and_a_full_device_releases_them_too():
    side = f"{allocator.STREAM} 1"
    stream = [("s", 60 * MIB, side), ("s", -60 * MIB)]
    # freed on the side stream, its 60 MiB segment stays with that stream: the default stream cudaMallocs anew
    assert allocator.replay(stream + _events(("a", "x", 60))).peak_reserved == 120 * MIB
    assert allocator.replay(stream + [("t", 60 * MIB, side)]).peak_reserved == 60 * MIB  # the stream reuses its own
    # unlike a graph's pool, a side stream's wholly free segment is released when the device is full
    released = allocator.replay(stream + _events(("a", "x", 60)), capacity=100 * MIB)
    assert released.oom_at is None and released.retries == 1 and released.peak_reserved == 60 * MIB


def test_an_oom_retry_frees_the_cache_and_a_real_oom_is_reported():
    trace = _events(("a", "x", 60), ("f", "x"), ("a", "y", 80))
    retried = allocator.replay(trace, capacity=100 * MIB)
    assert retried.oom_at is None and retried.retries == 1 and retried.peak_reserved == 80 * MIB
    assert allocator.replay(trace).peak_reserved == 140 * MIB  # no limit: the cache is kept
    held = allocator.replay(_events(("a", "x", 60), ("a", "y", 60)), capacity=100 * MIB)
    assert held.oom_at == 1 and held.oom_request == 60 * MIB and held.retries == 1
    # a segment with a block in use cannot be released
    split = allocator.replay(_events(("a", "x", 5), ("a", "y", 5), ("f", "y"), ("a", "z", 90)), capacity=100 * MIB)
    assert split.oom_at == 3


def test_each_release_is_placed_in_the_trace_and_a_plan_counts_its_last_steps_own(capsys):
    side = f"{allocator.STREAM} 1"
    step = _events(("a", "x", 60), ("f", "x")) + [("s", 60 * MIB, side), ("s", -60 * MIB, side)]
    # 60 MiB cached by each stream where 110 MiB hold one beside the workspace's 20 MiB segment: the side
    # stream's request releases the default's, and from the second step on each releases the other's
    two = allocator.replay(step + step, capacity=110 * MIB, persistent=(8 * MIB,))
    assert two.oom_at is None and two.retried_at == [2, 4, 6] and two.retries == 3  # the workspace not counted
    context = device.context(devices.by_key("a100-40gb"), "lazy")[0]
    # the two cuBLAS workspaces (8.1 MiB each) share one 20 MiB segment: 80 MiB with one stream's 60, 140 with both
    gpu = dataclasses.replace(devices.by_key("a100-40gb"), memory_gib=(130 + context) / 1024)
    plan = planner.Plan(0, {}, {}, "", 0, 0, events=step + step, last_step_at=len(step))
    memory = device.device_memory(plan, Target(gpu))
    assert memory.fits and memory.retries == 3 and memory.steady_retries == 2
    plan.memory = memory
    assert plan_command._line("x", plan, 1.0, 4).endswith("yes      1.0 (alloc retries: 3, 2 in the last step)")
    # the least it runs in: the workspaces' segment and one stream's 60 MiB, bisected from the GPU's 130 + context
    assert context + 80 <= device.least_mib(plan, Target(gpu), resolution_mib=1) < context + 81
    plan_command._memory_notes({"x": plan}, Target(gpu))
    said = capsys.readouterr().out
    assert "x: the allocator's cache filled the GPU" in said and "releases: 3, in the last step: 2" in said
    assert "runs in as little as 0.5 GiB" in said  # 511 MiB: within 64 of its allocated peak, no bisection
    # in less than the workspaces and one 60 MiB segment it does not run; with room for both streams, no release
    assert not device.runs_within(plan, Target(gpu), context + 70) and device.runs_within(plan, Target(gpu),
                                                                                          context + 80)
    assert device.device_memory(plan, Target(dataclasses.replace(gpu, memory_gib=1))).steady_retries == 0


def test_expandable_segments_unmap_the_free_tail_on_a_retry():
    # the small pool's free page at its segment's end goes back to the device for the large request
    trace = _events(("a", "s", 0.5), ("f", "s"), ("a", "z", 60))
    result = allocator.replay(trace, capacity=61 * MIB, mode="expandable_segments")
    assert result.oom_at is None and result.retries == 1 and result.peak_reserved == 60 * MIB
    # a tail that is in use stays: 40 + 40 (the free tail grown by two pages) + 2 MiB small pages > 120
    held = _events(("a", "x", 40), ("a", "y", 40), ("f", "y"), ("a", "s", 0.5), ("a", "z", 70))
    assert allocator.replay(held, capacity=120 * MIB, mode="expandable_segments").oom_at == 4
    assert allocator.replay(held, capacity=122 * MIB, mode="expandable_segments").peak_reserved == 122 * MIB


def test_unknown_allocator_mode_is_refused():
    with pytest.raises(ValueError, match="unknown allocator mode 'cudaMallocAsync'"):
        allocator.CachingAllocator(mode="cudaMallocAsync")
    with pytest.raises(checks.BadInput, match="ALLOCATOR must be one of native, expandable_segments"):
        device.device_memory(planner.Plan(0, {}, {}, "", 0, 0, events=[]), Target(devices.by_key("t4"), "bogus"))


@pytest.fixture(scope="module")
def tiny_plan():
    cfg = load_config("baseline", settings.read(env={}), model="tiny", seq=64, batch=4)
    start = time.perf_counter()
    plan = planner.plan(registry.load_setup("baseline"), cfg, Target(devices.by_key("a100-40gb")))
    return plan, time.perf_counter() - start


def test_the_replay_of_a_real_plan_holds_what_the_tracker_counted(tiny_plan):
    plan, _ = tiny_plan
    replayed = allocator.replay(plan.events)
    assert replayed.peak_allocated == plan.peak_bytes  # every allocation and free, in order, none lost
    assert replayed.peak_reserved >= replayed.peak_allocated
    memory = plan.memory
    assert memory.fits and memory.allocated_mib == pytest.approx(plan.peak_bytes / MIB + 2 * 8.125)  # 2 workspaces
    assert memory.total_mib == pytest.approx(memory.reserved_mib + memory.context_mib)
    assert memory.context_assumed and "pytorch/pytorch#109888" in memory.context_source  # Ampere: no measurement
    # the last step (the steady state) allocates nothing the first did not: the optimizer's state is the first's
    first, last = (Counter(n for _, n, *_ in part if n > 0) for part in (plan.events[:plan.last_step_at],
                                                                        plan.events[plan.last_step_at:]))
    assert last and not last - first and first - last


def test_a_plan_of_the_tiny_model_takes_seconds(tiny_plan):
    assert tiny_plan[1] < 30  # ~0.5 s alone; generous for a busy machine (the per-module peaks once took 80%)


def test_context_and_workspaces_follow_the_generation():
    ada, hopper, turing = (devices.by_key(k) for k in ("rtx-4090", "h100-sxm", "t4"))
    assert device.context(ada, "lazy")[2] is False and device.context(ada, "lazy")[0] == 426  # measured on Ada
    assert device.context(turing, "lazy")[2] is True  # none known: the stated figure, said to be assumed
    assert device.context(hopper, "lazy")[2] is False  # measured on an H200, a step's kernels loaded
    assert device.context(hopper, "eager")[0] >= device.context(hopper, "lazy")[0]  # eager loads them all
    assert device.context(turing, "eager")[0] > device.context(turing, "lazy")[0]
    assert device.cublas_workspaces(hopper) == (32 * MIB, 32 * MIB)
    assert device.cublas_workspaces(ada)[0] == 4096 * 1024 * 2 + 16 * 1024 * 8


def test_every_table_gpu_is_a_make_plan_choice():
    text = (ROOT / "docs" / "reference.md").read_text()
    assert all(gpu.key in text for gpu in devices.GPUS)


def test_every_table_gpu_has_its_host_link_for_offloaded_copies():
    links = {gpu.key: gpu.host_link_gbs for gpu in devices.GPUS}
    assert all(link and link > 0 for link in links.values()), links
    # PCIe per generation, each way at x16; the GH200's NVLink-C2C is the fastest, the T4's Gen3 the slowest
    assert links["t4"] < links["a100-80gb"] == links["rtx-4090"] < links["h100-sxm"] < links["gh200"]
