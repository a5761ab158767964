"""The measuring loop sees a delay where it fell: slow warm-up steps apart, a sleep in the
forward in its own step (none lost, none counted twice) and in its forward phase."""

import statistics
import time

import pytest
import torch
from helpers import measure_run, tiny_run

pytestmark = pytest.mark.usefixtures("one_thread")  # a clock checked on one thread (conftest.py)


class Delayed(torch.nn.Module):
    """Wraps the model; sleeps `delay_s` in the forward of chosen calls (0 is the first
    warm-up step's) and keeps its own perf_counter readings: when each call started and
    ended, and how long each sleep really took (on a loaded machine, longer than asked)."""

    def __init__(self, model, delay_s, calls):
        super().__init__()
        self.model, self.delay_s, self.calls = model, delay_s, calls
        self.started, self.ended, self.slept_ms = [], [], {}

    def forward(self, x, y):
        call = len(self.started)
        self.started.append(time.perf_counter())
        if call in self.calls:
            time.sleep(self.delay_s)
            self.slept_ms[call] = (time.perf_counter() - self.started[call]) * 1e3
        out = self.model(x, y)
        self.ended.append(time.perf_counter())
        return out


def test_slow_warmup_steps_are_not_counted():
    run = tiny_run()
    run.train_model = Delayed(run.model, 0.3, calls={0, 1})  # only the two warm-up steps
    warm, measured = measure_run(run)
    slept = [run.train_model.slept_ms[call] for call in (0, 1)]
    assert all(step >= ms for step, ms in zip(warm.step_ms, slept))
    assert max(measured.step_ms) < min(slept)


def _interleaved_delays(delay_s, steps=16, warmup=2):
    """One run whose odd measured steps sleep in the forward, so plain and delayed steps
    alternate under the same load, timed by the loop and, independently, by the probe: the
    Delayed module and an optimizer hook. Returns (measured phase, delayed steps, plain
    steps, probe times per measured step: sleep, forward call and step as the probe saw them)."""
    run = tiny_run()
    delayed = list(range(1, steps, 2))
    probe = run.train_model = Delayed(run.model, delay_s, calls={warmup + i for i in delayed})
    stepped = []
    run.optimizer.register_step_post_hook(lambda *_: stepped.append(time.perf_counter()))
    _, measured = measure_run(run, steps, warmup)
    ms = {
        "slept": {i: probe.slept_ms[warmup + i] for i in delayed},
        "forward": [(probe.ended[warmup + i] - probe.started[warmup + i]) * 1e3 for i in range(steps)],
        # from the forward call to the end of the optimizer step: all of a step but its edges
        "step": [(stepped[warmup + i] - probe.started[warmup + i]) * 1e3 for i in range(steps)],
        "after_forward": [(stepped[warmup + i] - probe.ended[warmup + i]) * 1e3 for i in range(steps)],
    }
    return measured, delayed, [i for i in range(steps) if i not in delayed], ms


def _median(values):
    return statistics.median(list(values))


def test_an_injected_delay_is_measured_within_tolerance():
    # load stretches sleeps and steps alike, so the loop's clock is held to the probe's, not to 80 ms
    measured, delayed, plain, probe = _interleaved_delays(0.08)
    tolerance = 0.25 * _median(probe["slept"].values())
    # every step holds what the probe saw of it, sleep included: the clock lost none of it ...
    assert all(measured.step_ms[i] >= probe["step"][i] for i in range(len(measured.step_ms)))
    assert all(probe["step"][i] >= probe["slept"][i] for i in delayed)
    # ... and adds only the step's edges (autocast, zero_grad), in delayed and plain steps alike: no
    # sleep counted twice or in a neighbouring step
    for steps in (delayed, plain):
        assert _median(measured.step_ms[i] - probe["step"][i] for i in steps) < tolerance


def test_a_delay_in_the_forward_pass_lands_in_the_forward_phase():
    measured, delayed, plain, probe = _interleaved_delays(0.05)
    tolerance = 0.25 * _median(probe["slept"].values())
    # the forward phase holds the whole forward call, sleep included, and little besides ...
    assert all(measured.forward_ms[i] >= probe["forward"][i] >= probe["slept"][i] for i in delayed)
    # ... and backward + optimizer hold what came after it, in delayed and plain steps alike; the
    # forward's edges (autocast, marks) are far shorter than what follows, so a sliver of it shows
    after = [b + o for b, o in zip(measured.backward_ms, measured.optimizer_ms)]
    for steps in (delayed, plain):
        edges = _median(measured.forward_ms[i] - probe["forward"][i] for i in steps)
        assert edges < min(tolerance, 0.25 * _median(probe["after_forward"][i] for i in steps))
        assert _median(after[i] - probe["after_forward"][i] for i in steps) == pytest.approx(0, abs=tolerance)
