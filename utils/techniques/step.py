"""One optimizer step, as the loop drives it (the step stage's objects): eager, with its
parts marked, or a replayed CUDA graph, timed whole.

A step takes ACCUM micro-batches: forward + loss (divided by ACCUM, so the gradient is the
mean over every sequence), backward, then one optimizer step through the GradScaler (a no-op
object unless fp16 enabled it, so there is one path). `mark(part)` is called as each part
ends; the loop's clock turns the marks into forward / backward / optimizer times.
"""

import contextlib

import torch

PARTS = ("forward", "backward", "optimizer")


def autocast(run, cache_enabled=True):
    dtype = run.autocast_dtype
    on = dtype is not None
    return torch.autocast(run.cfg.device, dtype=dtype or torch.float32, enabled=on, cache_enabled=cache_enabled)


def _scale(scaler):
    # note: a device tensor, read without a sync. update() backs the scale off exactly when
    # the step was skipped for inf/nan grads, so "scale went down" is "step skipped"
    return scaler._scale.clone() if scaler.is_enabled() else None


class EagerStep:
    graphed = False

    def __call__(self, run, micro_batches, mark=lambda part: None):
        """Returns (loss of the step, skipped: a bool tensor or None without a scaler)."""
        total = 0.0
        last = len(micro_batches) - 1
        for i, (x, y) in enumerate(micro_batches):
            # under DDP / FSDP2 only the last micro-batch's backward synchronises the gradients
            with run.no_sync() if i < last else contextlib.nullcontext():
                with autocast(run):
                    _, loss = run.train_model(x, y)
                    loss = loss / run.accum
                mark("forward")
                run.scaler.scale(loss).backward()
                mark("backward")
            total = total + loss.detach()
        before = _scale(run.scaler)
        # note: with a scaler, step() reads found_inf on the host (a sync) unless the optimizer is fused
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.optimizer.zero_grad(set_to_none=True)
        mark("optimizer")
        return total, (None if before is None else _scale(run.scaler) < before)


def cuda_capture(body, warmup_iters=3):
    """Warm `body` up on a side stream (as the CUDA graphs docs require), capture it, and
    return the graph's replay."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup_iters):
            body()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        body()
    return graph.replay


def make_capturable(optimizer):
    # keeps the step count on the GPU, so the step reads nothing on the host (CUDA only)
    for group in optimizer.param_groups:
        if "capturable" in group:
            group["capturable"] = True


class CudaGraphStep:
    """The whole step (every micro-batch's forward and backward, the optimizer step)
    captured once into a CUDA graph and replayed: one launch per step instead of thousands.

    Inputs are copied into static buffers the graph reads; the loss is a static output the
    replay overwrites. Events cannot sit inside a graph, so only the whole replay is timed:
    the loop leaves the parts blank. `capture` is injectable so the buffer logic can be
    checked on a CPU (tests pass one that returns `body` itself)."""

    graphed = True

    def __init__(self, capture=cuda_capture, capturable=True):
        self.capture, self.capturable, self.replay = capture, capturable, None

    def _prepare(self, run, micro_batches):
        if run.scaler.is_enabled():
            raise ValueError("cuda_graphs cannot capture GradScaler's host-side inf check: use it without fp16")
        if not type(run.optimizer).__module__.startswith("torch.optim"):
            raise ValueError(
                f"cuda_graphs needs a capturable torch.optim optimizer, not {type(run.optimizer).__name__}"
            )
        if self.capturable:
            make_capturable(run.optimizer)
        self.inputs = [(x.clone(), y.clone()) for x, y in micro_batches]

        def body():
            # set_to_none before the backward: the captured backward writes fresh grads
            run.optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for x, y in self.inputs:
                # autocast's cast cache must be off while capturing (CUDA graphs docs)
                with autocast(run, cache_enabled=False):
                    _, loss = run.train_model(x, y)
                    loss = loss / run.accum
                loss.backward()
                total = total + loss.detach()
            run.optimizer.step()
            self.loss = total

        self.replay = self.capture(body)

    def __call__(self, run, micro_batches, mark=lambda part: None):
        if self.replay is None:
            self._prepare(run, micro_batches)
        for (static_x, static_y), (x, y) in zip(self.inputs, micro_batches):
            static_x.copy_(x)
            static_y.copy_(y)
        self.replay()
        mark("step")
        return self.loss.clone(), None
