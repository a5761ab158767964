"""`make tune`: the fastest setup that fits, predicted for a GPU you name (or several), then proved
where it runs.

make tune MODEL=... GPU=... SEQ=...   the space of the techniques' table (utils/tune/space.py)
                                      planned for the GPU (utils/tune/search.py): a ranked table
                                      (predicted, never measured), the Pareto front of tokens/s
                                      against device memory, TUNE_REPORT and the command to paste
GPUS="a100-40gb h100-sxm l4"          each GPU searched, then ranked by tokens/s per GPU; a model
                                      that fits on no one GPU: the fewest GPUs with FSDP2
VERIFY=k                              tuned for this machine instead, the top k measured here
                                      (utils/tune/verify.py)

usage: python -m utils.tune   (settings from the environment)
"""

import concurrent.futures
import multiprocessing
import os
import sys
import time

from utils import checks, devices, registry, settings
from utils.tune import plans, report
from utils.tune.search import Search
from utils.tune.space import Config, join, space

MAX_GPUS = 64  # the FSDP2 search's ceiling: past it the answer is a cluster, not a choice


def _gpus(given):
    keys = given.gpus or (given.gpu,)
    for key in keys:
        try:
            devices.by_key(key)
        except ValueError as err:
            raise checks.BadInput(f"GPUS: {err}") from None
    return [devices.by_key(k) for k in dict.fromkeys(keys)]


def shape(given):
    """(the run config at the settings, its depth for screening or None, the global batch, the world:
    (kind, GPUs)); refuses a global batch the GPUs cannot divide."""
    from utils.models import arch
    from utils.plan.config import load_config, planned_world

    world = planned_world(given)
    cfg = load_config("baseline", given, world=world)
    gpus = world.size if world.kind else 1
    global_batch = given.global_batch or cfg.batch * gpus
    if global_batch % gpus:
        raise checks.BadInput(f"GLOBAL_BATCH={global_batch} is not a multiple of the {gpus} GPUs: each GPU takes an "
                              "equal micro-batch x accumulation")
    depth = None if arch(cfg.model) == "file" else cfg.layers
    return cfg, depth, global_batch, (world.kind, gpus)


def _screened(searching, configs, savers):
    """Each config screened; where it does not fit, what fits instead (search.Search.split): (the
    fitting Outcomes, every Outcome at the whole batch)."""
    outcomes, fitting = searching.screen(configs), []
    for outcome in outcomes:
        fitting += [outcome] if outcome.fits else searching.split(outcome, savers) if outcome.figures else []
    return fitting, outcomes


def _compiled_of(compiled, fitting, outcomes, top, pruned):
    """The compiled configs worth planning: both modes of the `top` fastest eager configurations
    (their fitting form's tokens/s, else their whole batch's), every one with top 0."""
    if not top:
        return compiled
    speed = {}
    for o in [*outcomes, *fitting]:
        if o.figures:
            base = join(*(p for p in registry.combination(o.config.technique).parts if p != "cudagraphs"))
            speed[base] = max(speed.get(base, 0), o.figures.tokens_per_s)
    fastest = sorted(speed, key=lambda b: -speed[b])[:top]
    wanted = {join(b, "compile") for b in fastest}
    kept = [c for c in compiled if c.technique in wanted]
    if len(kept) < len(compiled):
        pruned.add(f"compiled form not planned (its eager form is not among the {top} fastest: COMPILE_TOP)",
                   next(c.label for c in compiled if c not in kept), len(compiled) - len(kept))
    return kept


def search_gpu(pool, gpu, given, depth, global_batch, world):
    """Search `gpu` at the world given (one GPU, or PARALLEL x NPROC); where nothing fits on one
    GPU and none was asked, the fewest GPUs with FSDP2 (each dividing the global batch)."""
    kind, gpus = world
    budget = gpu.memory_gib * 1024 * (1 - given.memory_margin)
    worlds = [(kind, gpus)] if kind or "NPROC" in given.given else (
        [("", 1)] + [("fsdp", n) for n in (2**i for i in range(1, 7)) if n <= MAX_GPUS and global_batch % n == 0])
    for kind, gpus in worlds:
        configs, savers, pruned = space(given.techniques, gpu)
        searching = Search(pool, given, gpu, depth, budget, pruned)
        configs = [Config(c.technique, c.compile_mode, global_batch // gpus, 1, gpus, kind) for c in configs]
        eager = [c for c in configs if not c.compile_mode]
        fitting, outcomes = _screened(searching, eager, savers)
        compiled = _compiled_of([c for c in configs if c.compile_mode], fitting, outcomes, given.compile_top, pruned)
        more, _ = _screened(searching, compiled, savers)
        ranked = sorted(fitting + more, key=lambda o: -o.figures.tokens_per_s)
        found = report.Found(gpu, (kind, gpus), searching.confirm(ranked), pruned, searching.planned, len(configs),
                             global_batch, budget, depth)
        if found.outcomes or kind:
            return found
    return found


def _cpu(given):
    """VERIFY on a CPU: the CPU's space predicted on its roofline, the top measured here."""
    from utils.measure import config as run_config
    from utils.tune import verify

    cfg = run_config.load("baseline", given)
    global_batch = given.global_batch or cfg.batch
    start = time.perf_counter()
    predicted, pruned = verify.cpu_predictions(given, global_batch)
    lines = [f"# make tune: {cfg.model}, T={cfg.seq}, global batch {global_batch}, on this CPU", "",
             *report.cpu_table(predicted, pruned, time.perf_counter() - start)]
    verified, status = verify.section(predicted, given, "this CPU") if predicted else (["Nothing to measure."], 1)
    return report.emit(lines + verified, given, status)


@checks.command("tune")
def main():
    given = settings.read()
    gpus = _gpus(given)
    if given.verify:
        from utils.tune import verify

        gpu = verify.this_gpu(given)
        if gpu is None:
            return _cpu(given)
        gpus = [gpu]
    cfg, depth, global_batch, world = shape(given)
    start, found = time.perf_counter(), []
    workers = os.cpu_count() or 1
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=plans.quiet_worker) as pool:
        for gpu in gpus:
            print(f"tune: {cfg.model} T={cfg.seq}, global batch {global_batch}, on {gpu.name}: planning "
                  f"({workers} worker processes)...", file=sys.stderr, flush=True)
            found.append(search_gpu(pool, gpu, given, depth, global_batch, world))
    lines, status = report.lines(found, cfg, given, time.perf_counter() - start)
    if given.verify and found[0].outcomes:
        from utils.tune import verify

        top = [(o.config, o.figures.step_ms, o.figures.tokens_per_s) for o in found[0].outcomes]
        verified, status = verify.section(top, given, f"this {found[0].gpu.name}")
        lines += verified
    return report.emit(lines, given, status)


if __name__ == "__main__":
    sys.exit(main())
