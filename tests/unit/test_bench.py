"""The measuring loop's phases and rows: the steps asked for, warm-up apart, phases that sum to
the step, a falling loss, the attention kernel that ran."""

import pytest
from helpers import measure_run, tiny_run

from utils.measure import loop as bench

pytestmark = pytest.mark.usefixtures("one_thread")  # a clock checked on one thread (conftest.py)


def test_phases_have_the_requested_steps():
    warm, measured = measure_run(tiny_run(), steps=5, warmup=3)
    assert (warm.name, len(warm.step_ms), len(warm.loss)) == ("warmup", 3, 3)
    assert (measured.name, len(measured.step_ms), len(measured.loss)) == ("measured", 5, 5)
    assert all(ms > 0 for ms in measured.step_ms)
    assert measured.peak_rss_mib > 0 and measured.peak_alloc_mib is None  # CPU: no CUDA figures


def test_no_warmup_phase_when_warmup_is_zero():
    warm, measured = measure_run(tiny_run(), steps=2, warmup=0)
    assert warm is None and len(measured.step_ms) == 2


def test_training_reduces_the_coin_flip_loss():
    _, measured = measure_run(tiny_run(), steps=30)
    assert measured.loss[-1] < measured.loss[0]


def test_attention_kernel_names_what_ran():
    run = tiny_run()
    assert bench.attention_kernel(run) == "manual"
    run.model.set_attention("sdpa")
    assert bench.attention_kernel(run).startswith("sdpa:")


def test_phases_sum_to_the_step():
    warm, measured = measure_run(tiny_run(), steps=5, warmup=1)
    for phase in (warm, measured):
        for total, *parts in zip(phase.step_ms, phase.forward_ms, phase.backward_ms, phase.optimizer_ms):
            assert all(p > 0 for p in parts)
            assert sum(parts) == pytest.approx(total, rel=1e-6)
