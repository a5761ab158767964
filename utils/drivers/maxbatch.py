"""`make maxbatch`: the largest batch that trains, per technique.

Grow the batch x2 from 1 until a trial fails, then bisect between the last batch that
trained and the first that did not. Measured (the default): each trial is the technique's
own script, STEPS=2 after one warm-up step, in a fresh process, so an out-of-memory error
cannot poison the next trial; its rows go to a scratch file. On a CPU, MAXMEM_GIB= caps each
trial process for real (RLIMIT_DATA: every heap and anonymous mapping, so torch's allocator
fails as a GPU's would). With PLAN=1 the planner answers instead, for the GPU named by GPU=
(GPU_MEMORY_GIB= for another size): a batch fits when the caching allocator's replay of its
planned step never runs out of the GPU's memory beside the CUDA context (utils/plan/device.py):
its predicted device total fits.

One row per technique is appended to RESULTS_FILE (phase `maxbatch`, batch = the answer,
kind measured or predicted); 0 means not even B=1 trains.

usage: python -m utils.drivers.maxbatch   (TECHNIQUE if given, else TECHNIQUES; PLAN, GPU,
GPU_MEMORY_GIB, ALLOCATOR, MODULE_LOADING, MAXMEM_GIB and the run settings from the environment)
"""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from utils import checks, registry, results, settings
from utils.drivers.runner import memory_cap, run
from utils.measure import env
from utils.plan import planner
from utils.plan.config import load_config, planned_device, runs_of, where
from utils.techniques import setup_of

TRIAL_STEPS = {"STEPS": "2", "WARMUP": "1", "REPEATS": "1"}
MAX_BATCH = 2**16  # search ceiling: a batch past this is not a memory question any more


def search(fits, limit=MAX_BATCH, start=1):
    """Largest b in [1, limit] with fits(b), assuming fits is monotone: from `start` (1, or a
    guess) steps of 1, 2, 4, ... up while it fits, then bisect. Returns (answer, [(batch,
    fits?)...]); answer 0 if nothing fits. A good guess costs two trials (it, and one more)."""
    trials = []

    def trial(b):
        ok = fits(b)
        trials.append((b, ok))
        return ok

    low, high = 0, None  # low trains, high does not
    start = max(1, min(start, limit))
    if start > 1 and not trial(start):
        low, high = 0, start
    else:
        low, step = (start, 1) if start > 1 else (0, 1)
        b = start if start == 1 else start + 1
        while b <= limit:
            if not trial(b):
                high = b
                break
            low, b, step = b, (b * 2 if start == 1 else start + step * 2), step * 2
    if high is None:
        return low, trials
    while high - low > 1:
        mid = (low + high) // 2
        if trial(mid):
            low = mid
        else:
            high = mid
    return low, trials


def check_cap(maxmem_gib):
    """Refuse a cap below what Python with torch itself needs to start."""
    proc = subprocess.run([sys.executable, "-c", "import torch"], preexec_fn=memory_cap(maxmem_gib),
                          capture_output=True)
    if proc.returncode != 0:
        raise checks.BadInput(f"MAXMEM_GIB={maxmem_gib:g} is below what Python with torch needs to start")


def measured_trial(technique, batch, maxmem_gib, scratch):
    """Run the technique at `batch` in a fresh process (rows to the `scratch` file): True if
    it trained, False if it ran out of memory; anything else (skip, error) raises
    RuntimeError with its line."""
    start = time.perf_counter()
    outcome = run(technique, {**TRIAL_STEPS, "BATCH": str(batch), "RESULTS_FILE": scratch}, capture=True,
                  memory_gib=maxmem_gib)
    out_of_memory = (outcome.status == "oom" or "MemoryError" in outcome.output
                     or "can't allocate memory" in outcome.output)
    if outcome.status != "ok" and not out_of_memory:
        raise RuntimeError(outcome.line)
    said = "trained" if outcome.status == "ok" else "ran out of memory"
    progress(technique, batch, f"{said} ({time.perf_counter() - start:.0f} s)")
    return outcome.status == "ok"


def progress(technique, batch, outcome):
    """One line per trial as it ends: a search of a large model's plans takes minutes."""
    print(f"maxbatch: {technique}: B={batch} {outcome}", flush=True)


class PlannedFit:
    """Whether a batch fits the target GPU by the planner (its device total: the allocator's
    replay ran out of nothing), each batch planned once."""

    def __init__(self, technique, target, given):
        self.technique, self.target, self.budget, self.memory = technique, target, target.gpu.memory_gib, {}
        self.given = given
        self.setup = setup_of(technique)[1]

    def planned(self, batch):
        if batch not in self.memory:
            start, cfg = time.perf_counter(), load_config(self.technique, self.given, batch=batch)
            memory = self.memory[batch] = planner.plan(self.setup, cfg, self.target).memory
            progress(self.technique, batch, f"{'fits' if memory.fits else 'does not fit'}: device total "
                     f"{memory.total_mib / 1024:,.1f} of {self.budget:g} GiB (planned in "
                     f"{time.perf_counter() - start:.0f} s)")
        return self.memory[batch]

    def total_gib(self, batch):
        """The device total the batch needs (where it does not fit: what it would need), GiB."""
        return self.planned(batch).total_mib / 1024

    def __call__(self, batch):
        return self.planned(batch).fits


def planned_search(technique, target, given, limit=MAX_BATCH, planned=None):
    """(largest batch, trials) on the planned GPU, in a few plans: the planned peak is the
    larger of the optimizer step's (constant in the batch) and backward's (affine in it), a
    convex, piecewise-linear function: the line through B=1 and B=2 points past the answer (x2
    steps beyond it where it fell short), then `narrow` between the last batch that fits and the
    first that does not. Both are planned: the answer fits and one more sequence does not (a
    larger batch that fits again, near the allocator's rounding, is not looked for). `planned`:
    DeviceMemory already planned, by batch; `given`: the settings."""
    fits, trials = PlannedFit(technique, target, given), []
    fits.memory.update(planned or {})

    def trial(b):
        trials.append((b, fits(b)))
        return trials[-1][1]

    for b in (1, 2):
        if b > limit or not trial(b):
            return b - 1, trials
    # the line through B=1 and B=2 extrapolated: right at once where backward's peak leads
    slope = fits.total_gib(2) - fits.total_gib(1)
    low, high = 2, limit if slope <= 0 else min(limit, 3 + int((fits.budget - fits.total_gib(2)) / slope))
    while trial(high):
        if high == limit:
            return high, trials
        low, high = high, min(limit, high * 2)
    return narrow(low, high, trial, fits.total_gib, fits.budget), trials


def narrow(low, high, trial, figure, budget):
    """The largest batch that fits between `low` (fits) and `high` (does not): the chord between
    their `figure`s (GiB) where it crosses `budget` (regula falsi: a chord never lies below a convex
    function, so it lands on the answer once both ends are in the affine part), and a bisection after
    any chord that did not halve the interval (a jump in the figure, the replay's reserved memory
    following the allocated peak in steps of its segments, would otherwise move one end a batch a
    plan): at most about twice bisection's log2 plans."""
    bisect = False
    while high - low > 1:
        width = high - low
        if bisect:
            b = (low + high) // 2
        else:
            f_low, f_high = figure(low), figure(high)
            b = min(max(low + int((budget - f_low) * width / (f_high - f_low)), low + 1), high - 1)
        if trial(b):
            low = b
        else:
            high = b
        bisect = not bisect and (high - low) * 2 > width
    return low


def techniques(given):
    """T or TECHNIQUE when given, else TECHNIQUES (blank: every technique)."""
    if given.t or "TECHNIQUE" in given.given:
        return [registry.one_chosen(given)]
    return registry.chosen(given)


@checks.command("maxbatch", planner.NotModelled)
def main():
    given = settings.read()
    names = techniques(given)
    planned, maxmem_gib = given.plan, given.maxmem_gib
    target, cfgs = runs_of(names, given)
    if maxmem_gib and not planned:
        check_cap(maxmem_gib)
    if planned:
        device = planned_device(target)
        on = where(target, next(iter(cfgs.values())).world)
        on += (f" (planned: the device total, the caching allocator ({target.allocator}) replayed + the CUDA "
               "context, fits)")
    else:
        device = env.capture(next(iter(cfgs.values())).device)
        on = f"{device['device']}" + (f" capped at MAXMEM_GIB={maxmem_gib:g}" if maxmem_gib else "")
    rows, status = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        scratch = str(Path(tmp) / "trials.csv")
        for name, cfg in cfgs.items():
            try:
                best, trials = (planned_search(name, target, given) if planned
                                else search(lambda b, n=name: measured_trial(n, b, maxmem_gib, scratch)))
            except RuntimeError as err:
                print(f"maxbatch: {name}: cannot search: {err}", file=sys.stderr)
                status = 1
                continue
            tried = ", ".join(f"{b}{'' if ok else ' x'}" for b, ok in trials)
            ceiling = " (the search's ceiling: at least this)" if best == MAX_BATCH else ""
            line = f"{cfg.model} T={cfg.seq} with {name}: largest batch B={best}{ceiling} on {on}"
            print(f"maxbatch: {line} (trials: {tried})", flush=True)
            rows.append(results.identity(cfg, name, device, batch=best, status="ok", reason=line, phase="maxbatch",
                                         kind="predicted" if planned else "measured"))
    if rows:
        results.append_rows(next(iter(cfgs.values())).results_file, rows)
    return status


if __name__ == "__main__":
    sys.exit(main())
