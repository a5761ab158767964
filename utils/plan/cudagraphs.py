"""CUDA graphs planned: the graph's private memory pool, the launches gone.

A step replays CUDA graphs in two ways, each planned on fake tensors as it runs:

- `cudagraphs`: the suite's CudaGraphStep (utils/techniques/step.py) captures the whole step.
  Its own preparation runs with the capture and the warm-up replaced (`plan_cuda_graph_step`):
  the warm-up runs the step's body once, eagerly, in the default pools (the real three runs
  allocate the same, each freeing the last's); the release of the warm-up's cache
  (torch.cuda.empty_cache) is a RELEASE event of the trace; the capture runs the body with every allocation in
  the graph's private pool (torch.cuda.graph: the allocator's begin_allocate_to_pool); a replay
  runs the body again in that pool. A real replay allocates nothing; the planned one is its
  equal in memory: the body first frees the gradients (zero_grad set_to_none), so the pool's
  blocks are all cached again, and the same requests in the same order take the same blocks.
  Its ops are the step's: the timing's. The capturable optimizer (the step count kept on the
  device, torch.optim's `capturable`) is planned as the non-capturable one: fake CPU tensors are
  not a device torch.optim captures on; the difference is one scalar per parameter.
- `COMPILE_MODE=reduce-overhead`: inductor's cudagraph trees (torch/_inductor/cudagraph_trees.py)
  record each compiled graph into one private pool per device, which the forward and backward
  graphs share; their outputs (the saved activations, the gradients) live in it, and memory a
  graph's output no longer holds is reused by the next graph recorded. Planned: every
  allocation made while a compiled graph runs comes from that pool (`GRAPH_POOL`), the eager code
  around them (the optimizer step, zero_grad) from the default pools.

Time (utils/plan/timing.py, `step_time`): a replayed kernel costs the host nothing; `graphed` is
`STEP` (everything) or `COMPILED` (the compiled graphs' kernels; the eager optimizer still
launches its own). The replay's own host work (one launch; cudagraph trees' checks of its
inputs) is not counted.

Not modelled: the copies cudagraph trees make of a graph's non-static inputs (the token ids:
kilobytes), and whatever they keep alive from one generation to the next beyond the outputs
the step holds. `max-autotune` stays refused: its kernels are the winners of timing candidate
Triton templates on the GPU, which no plan without the GPU can know.
"""

import contextlib

from utils.plan.allocator import RELEASE

GRAPH_POOL = "cuda graph"  # the private pool's name in a plan's trace (utils/plan/allocator.py)
STEP, COMPILED = "step", "compiled"  # what replays as CUDA graphs: the whole step, or the compiled graphs


@contextlib.contextmanager
def in_graph_pool(tracker):
    """Within it, the tracker's allocations come from the graph's private pool."""
    before, tracker.pool = tracker.pool, GRAPH_POOL
    try:
        yield
    finally:
        tracker.pool = before


def plan_cuda_graph_step(step, tracker):
    """Make a CudaGraphStep plannable on fake tensors, its allocations on `tracker` (the plan's
    PeakTracker); see the module's docstring."""

    def in_pool(body):
        with in_graph_pool(tracker):
            body()

    def capture(body):
        in_pool(body)
        return lambda: in_pool(body)

    step.warm = lambda body, iters: body()
    step.capture = capture
    step.release = lambda: tracker.events.append((RELEASE, 0))  # torch.cuda.empty_cache, replayed
    step.capturable = False
