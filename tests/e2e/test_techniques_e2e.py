"""The loop's wall clock sees a gap between steps (a slow data loader's sleep) that the step
times do not."""

import time

from helpers import bare_run

from utils import techniques as t
from utils.measure import data
from utils.measure import loop as bench


def test_the_wall_clock_sees_gaps_between_steps_that_step_times_do_not():
    run = bare_run()
    t.adamw(run)

    slept_ms = []

    def slow_data(batches, delay_s=0.05):
        for batch in batches:
            start = time.perf_counter()
            time.sleep(delay_s)  # e.g. a data loader the GPU waits for
            slept_ms.append((time.perf_counter() - start) * 1e3)  # as slept: a busy machine oversleeps
            yield batch

    _, measured = bench.measure(run, slow_data(data.batches(run.cfg)), steps=4, warmup=0)
    # what the step times leave out holds at least every sleep: they fell between the steps
    assert measured.wall_ms - sum(measured.step_ms) >= sum(slept_ms[:4])
