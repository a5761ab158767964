"""The measuring loop times what it claims: warm-up apart, delays seen, rows well-formed."""
import statistics
import time

import pytest
import torch

from utils import bench, data
from utils import techniques as t
from utils.config import RunConfig
from utils.model import build_model


class Delayed(torch.nn.Module):
    """Wraps the model; sleeps `delay_s` in the forward of chosen calls."""

    def __init__(self, model, delay_s, calls):
        super().__init__()
        self.model, self.delay_s, self.calls, self.count = model, delay_s, calls, 0

    def forward(self, x, y):
        if self.count in self.calls:
            time.sleep(self.delay_s)
        self.count += 1
        return self.model(x, y)


def _run(device="cpu"):
    torch.manual_seed(0)
    cfg = RunConfig("test", 10, 2, "tiny", 2, 16, device, "coinflip", 0, 1e-3, "unused.csv")
    run = t.Run(cfg, build_model("tiny", cfg.seq).to(device))
    t.strict_fp32(run)
    t.adamw(run)
    return run


def _measure(run, steps=10, warmup=2):
    return bench.measure(run, data.batches(run.cfg), steps, warmup)


def test_phases_have_the_requested_steps():
    warm, measured = _measure(_run(), steps=5, warmup=3)
    assert (warm.name, len(warm.step_ms), len(warm.loss)) == ("warmup", 3, 3)
    assert (measured.name, len(measured.step_ms), len(measured.loss)) == ("measured", 5, 5)
    assert all(ms > 0 for ms in measured.step_ms)
    assert measured.peak_rss_mib > 0 and measured.peak_alloc_mib is None  # CPU: no CUDA figures


def test_no_warmup_phase_when_warmup_is_zero():
    warm, measured = _measure(_run(), steps=2, warmup=0)
    assert warm is None and len(measured.step_ms) == 2


def test_slow_warmup_steps_are_not_counted():
    run = _run()
    run.train_model = Delayed(run.model, 0.3, calls={0, 1})  # only the two warm-up steps
    warm, measured = _measure(run)
    assert min(warm.step_ms) >= 300
    assert max(measured.step_ms) < 300


def test_an_injected_delay_is_measured_within_tolerance():
    delay_ms = 80
    plain = statistics.median(_measure(_run())[1].step_ms)
    run = _run()
    run.train_model = Delayed(run.model, delay_ms / 1e3, calls=set(range(2, 12)))  # every measured step
    delayed = statistics.median(_measure(run)[1].step_ms)
    assert delayed - plain == pytest.approx(delay_ms, abs=20)


def test_training_reduces_the_coin_flip_loss():
    _, measured = _measure(_run(), steps=30)
    assert measured.loss[-1] < measured.loss[0]


def test_attention_kernel_names_what_ran():
    run = _run()
    assert bench.attention_kernel(run) == "manual"
    run.model.set_attention("sdpa")
    assert bench.attention_kernel(run).startswith("sdpa:")


def test_phases_sum_to_the_step():
    warm, measured = _measure(_run(), steps=5, warmup=1)
    for phase in (warm, measured):
        for total, *parts in zip(phase.step_ms, phase.forward_ms, phase.backward_ms, phase.optimizer_ms):
            assert all(p > 0 for p in parts)
            assert sum(parts) == pytest.approx(total, rel=1e-6)


def test_a_delay_in_the_forward_pass_lands_in_the_forward_phase():
    run = _run()
    run.train_model = Delayed(run.model, 0.05, calls=set(range(2, 12)))
    _, measured = _measure(run)
    assert min(measured.forward_ms) >= 50 and max(measured.backward_ms) < 50
