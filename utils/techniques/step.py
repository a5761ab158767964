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


def clip(run):
    """Clip the gradients' global norm to GRAD_CLIP (nothing without it); fp16's scaled gradients are unscaled
    first, so the norm is the true one (AMP's docs, "Gradient clipping"; the scaler's step then skips the unscale)."""
    if run.cfg.grad_clip:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.grad_clip)


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
                with autocast(run), run.saved_tensors():
                    _, loss = run.train_model(x, y)
                    loss = loss / len(micro_batches)  # the gradient: the mean over every micro-batch's sequences
                mark("forward")
                run.scaler.scale(loss).backward()
                mark("backward")
            total = total + loss.detach()
        before = _scale(run.scaler)
        clip(run)
        # note: with a scaler, step() reads found_inf on the host (a sync) unless the optimizer is fused
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.optimizer.zero_grad(set_to_none=True)
        mark("optimizer")
        return total, (None if before is None else _scale(run.scaler) < before)


WARMUP_ITERS = 3  # eager runs of the step before capture (the CUDA graphs docs' example uses 3)


def side_stream_warmup(body, iters):
    """Run `body` on a side stream before capture, as the CUDA graphs docs require."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(iters):
            body()
    torch.cuda.current_stream().wait_stream(stream)


def cuda_capture(body):
    """Capture `body` into a CUDA graph; return the graph's replay."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        body()
    return graph.replay


def make_capturable(optimizer):
    # keeps the step count on the GPU, so the step reads nothing on the host (CUDA only)
    for group in optimizer.param_groups:
        if "capturable" in group:
            group["capturable"] = True


def uncapturable(run):
    """Why the run's step cannot be captured whole as one CUDA graph, or None."""
    if run.scaler.is_enabled():
        return "cuda_graphs cannot capture fp16's GradScaler: its inf check reads the GPU from the host each step"
    opt = run.optimizer
    if opt is not None and not type(opt).__module__.startswith("torch.optim"):
        return (f"cuda_graphs needs a capturable torch.optim optimizer; {type(opt).__module__}.{type(opt).__name__} "
                "steps from the host (bitsandbytes syncs per parameter, torchao's offload steps on the CPU)")
    return None


def _training_state(run):
    """Copies of everything a step changes: weights and buffers, optimizer state, the RNGs."""
    tensors = list(run.model.state_dict().values())
    state = {id(t): t.clone() for s in run.optimizer.state.values() for t in s.values() if torch.is_tensor(t)}
    cuda = any(t.is_cuda for t in tensors)
    rng = (torch.get_rng_state(), torch.cuda.get_rng_state() if cuda else None)
    return tensors, [t.clone() for t in tensors], state, rng


@torch.no_grad()
def _rewind(run, saved):
    """Put the training state back as `saved` found it, in place (the graph captures addresses).
    Optimizer state made since (Adam's moments and step, at their first step) goes back to the
    zeros a first step starts from."""
    tensors, copies, state, (cpu_rng, cuda_rng) = saved
    for tensor, copy in zip(tensors, copies):
        tensor.copy_(copy)
    for s in run.optimizer.state.values():
        for t in s.values():
            if torch.is_tensor(t):
                t.copy_(state[id(t)]) if id(t) in state else t.zero_()
    torch.set_rng_state(cpu_rng)
    if cuda_rng is not None:
        torch.cuda.set_rng_state(cuda_rng)


class CudaGraphStep:
    """The whole step (every micro-batch's forward and backward, the optimizer step)
    captured once into a CUDA graph and replayed: one launch per step instead of thousands.

    Inputs are copied into static buffers the graph reads; the loss is a static output the
    replay overwrites. Events cannot sit inside a graph, so only the whole replay is timed:
    the loop leaves the parts blank. Capture needs the step run eagerly first; those runs
    change the weights and the optimizer state, so they are rewound before capture, and the
    first replay is the run's first optimizer step, recorded like every other. The warm-up's
    cached memory is released before capture: the graph allocates from a private pool, which
    cannot reuse the default pools' cached blocks (without the release the device holds the
    step's memory twice). `warm`, `capture` and `release` are injectable so this logic is checked
    on a CPU (tests run `body` itself)."""

    graphed = True

    def __init__(self, capture=cuda_capture, warm=side_stream_warmup, capturable=True, release=torch.cuda.empty_cache):
        self.capture, self.warm, self.capturable, self.release = capture, warm, capturable, release
        self.replay = None

    def _prepare(self, run, micro_batches):
        why = uncapturable(run)
        if why:
            raise ValueError(why)
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
                    loss = loss / len(self.inputs)
                loss.backward()
                total = total + loss.detach()
            clip(run)  # capturable: a norm and a scale on the GPU, nothing read on the host
            run.optimizer.step()
            self.loss = total

        saved = _training_state(run)
        self.warm(body, WARMUP_ITERS)
        _rewind(run, saved)
        del saved  # the copies go before capture, and their memory with the warm-up's
        self.release()
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
