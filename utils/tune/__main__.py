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

import dataclasses
import itertools
import sys
import time

from utils import checks, registry, settings
from utils.catalog import BY_NAME, COMPILE_SCOPES, SAVES_MEMORY
from utils.devices import nodes_for
from utils.plan import workers
from utils.tune import plans, report
from utils.tune.search import SPLIT_TOP, Search
from utils.tune.space import COMPILE_MODES, join, options, scopes_of, space

MAX_GPUS = 64  # the FSDP2 search's ceiling: past it the answer is a cluster, not a choice


def _gpus(given):
    """The GPUs to search (GPUS=, else GPU=), each with GPU_MEMORY_GIB= where set."""
    from utils.plan.config import gpu_of
    from utils.plan.device import context

    try:
        gpus = [gpu_of(key, given) for key in dict.fromkeys(given.gpus or (given.gpu,))]
    except ValueError as err:
        raise checks.BadInput(f"GPUS: {err}") from None
    for gpu in gpus:  # a card too small for anything: said as such, not as every configuration's failure
        context_mib, budget = context(gpu, given.module_loading)[0], plans.budget_mib(gpu, given)
        if context_mib >= budget:
            raise checks.BadInput(f"{gpu.name}: the CUDA context alone ({context_mib:,.0f} MiB) takes the "
                                  f"{budget:,.0f} MiB a step may use (its memory less MEMORY_MARGIN="
                                  f"{given.memory_margin:g}): nothing runs there")
    return gpus


def shape(given):
    """(the run config at the settings, its depth for screening or None, the global batch, the world:
    (kind, GPUs)); refuses a global batch the GPUs cannot divide."""
    from utils.models import arch
    from utils.plan.config import load_config, load_target, planned_world

    world = planned_world(given)
    load_target(given)  # NODES against the GPUs asked for, refused as make plan refuses it
    cfg = load_config("baseline", given, world=world)
    gpus = world.size if world.kind else 1
    global_batch = given.global_batch or cfg.batch * gpus
    if global_batch % gpus:
        raise checks.BadInput(f"GLOBAL_BATCH={global_batch} is not a multiple of the {gpus} GPUs: each GPU takes an "
                              "equal micro-batch x accumulation")
    depth = None if arch(cfg.model) == "file" else cfg.layers
    return cfg, depth, global_batch, (world.kind, gpus)


def _screened(searching, configs, savers, pruned):
    """Each config screened; for the SPLIT_TOP fastest that do not fit, what fits instead
    (search.Search.split): the Outcomes that fit."""
    outcomes = searching.screen(configs)
    fitting = [o for o in outcomes if o.fits]
    short = sorted((o for o in outcomes if o.figures and not o.fits), key=lambda o: -o.figures.tokens_per_s)
    # the fastest that could fit: LoRA over fp32 weights of an 8B model on a 24 GiB card never will, nor its full
    # fine-tune with AdamW's two moments of every weight, whatever saves
    heavy = [o for o in short if o.figures.floor_exceeds(searching.budget_mib)]
    if heavy:
        pruned.add("does not fit: its weights and optimizer state alone pass the GPU's memory (no memory saver or "
                   "smaller micro-batch cuts them)", f"{heavy[0].config.label}: weights "
                   f"{heavy[0].figures.weights_mib:,.0f} MiB, optimizer state {heavy[0].figures.optimizer_mib:,.0f} "
                   "MiB", len(heavy))
    short = [o for o in short if not o.figures.floor_exceeds(searching.budget_mib)]
    for outcome in short[:SPLIT_TOP]:
        fitting += searching.split(outcome, savers)
    if len(short) > SPLIT_TOP:
        pruned.add(f"does not fit, not among the {SPLIT_TOP} fastest given memory savers and smaller micro-batches",
                   short[SPLIT_TOP].config.label, len(short) - SPLIT_TOP)
    return fitting


def _compiled_of(compiled, fitting, whole, top, pruned):
    """The compiled configs worth planning: every mode and scope of the compiled forms of the `top` fastest
    eager configurations that fit (COMPILE_TOP; 0: every one), each at the whole batch without
    memory savers and at the split (savers, micro-batch) that made its eager form fit. None where
    nothing eager fits: compiling keeps the eager step's weights and optimizer state."""
    planned, bases = [], []
    for outcome in sorted(fitting, key=lambda o: -o.figures.tokens_per_s):
        config = outcome.config
        parts = [p for p in registry.combination(config.technique).parts if p != "cudagraphs"]
        base = [p for p in parts if BY_NAME[p].tune != SAVES_MEMORY]
        if join(*base) not in bases:
            if top and len(bases) == top:
                break
            bases.append(join(*base))
        for mode, scope in itertools.product(COMPILE_MODES, COMPILE_SCOPES):
            for name, batch, accum in ((base, whole, 1), (parts, config.batch, config.accum)):
                if scope not in scopes_of(join(*name)):
                    continue
                try:
                    tried = dataclasses.replace(config, technique=join(*name, "compile"), compile_mode=mode,
                                                compile_scope=scope, batch=batch, accum=accum)
                except checks.BadInput:
                    continue
                if tried not in planned:
                    planned.append(tried)
    names = {c.technique for c in planned}
    left = [c for c in compiled if c.technique not in names]
    if left:
        pruned.add(f"compiled form not planned (its eager form is not among the {top} fastest that fit: "
                   "COMPILE_TOP)", left[0].label, len(left))
    return planned


def _search_world(pool, gpu, given, depth, global_batch, world, budget):
    """The search on `gpu` for one world ((kind, GPUs)): (report.Found, the leanest Outcome screened)."""
    kind, gpus = world
    configs, savers, pruned = space(given.techniques, gpu)
    searching = Search(pool, given, gpu, depth, budget, pruned)
    nodes = nodes_for(gpus, given.nodes) if gpus > 1 else 1
    configs = [dataclasses.replace(c, batch=global_batch // gpus, accum=1, gpus=gpus, parallel=kind, nodes=nodes)
               for c in configs]
    eager = [c for c in configs if not c.compile_mode]
    fitting = _screened(searching, eager, savers, pruned)
    compiled = _compiled_of([c for c in configs if c.compile_mode], fitting, global_batch // gpus, given.compile_top,
                            pruned)
    more = [o for o in searching.screen(compiled) if o.fits]
    ranked = sorted(fitting + more, key=lambda o: -o.figures.tokens_per_s)
    found = report.Found(gpu, world, searching.confirm(ranked), pruned, searching.planned, len(configs),
                         global_batch, budget, depth)
    return found, searching.leanest


def search_gpu(pool, gpu, given, depth, global_batch, world):
    """Search `gpu` at the world given (one GPU, or PARALLEL x NPROC); where nothing fits on one GPU
    and none was asked, the fewest GPUs with FSDP2: each count dividing the global batch probed with
    the leanest configuration one GPU screened (at micro-batch 1), the first it fits searched whole."""
    budget = plans.budget_mib(gpu, given)
    if world[0] or "NPROC" in given.given:
        return _search_world(pool, gpu, given, depth, global_batch, world, budget)[0]
    found, leanest = _search_world(pool, gpu, given, depth, global_batch, ("", 1), budget)
    if found.outcomes or leanest is None:
        return found
    counts = [n for n in (2**i for i in range(1, 7)) if n <= MAX_GPUS and global_batch % n == 0]
    for n in counts:
        # the probe is planned whole: its device total, not a screened bound, says whether n GPUs can do
        probe = Search(pool, given, gpu, None, budget, found.pruned)
        lean = dataclasses.replace(leanest.config, batch=1, accum=global_batch // n, gpus=n, parallel="fsdp",
                                   nodes=nodes_for(n, given.nodes))
        probed = probe.screen([lean])[0]
        if not probed.fits:
            continue
        more, _ = _search_world(pool, gpu, given, depth, global_batch, ("fsdp", n), budget)
        # the probe was planned whole and fits: it is confirmed, ranked with the search's confirmed rows
        confirmed = [o for o in more.outcomes if not o.figures.screened and o.config != lean] + [probed]
        rest = [o for o in more.outcomes if o.figures.screened and o.config != lean]
        more.outcomes = sorted(confirmed, key=lambda o: -o.figures.tokens_per_s) + rest
        more.note = (f"Nothing fits on one {gpu.name}; on {n} with FSDP2 `{lean.label}` does (planned whole; "
                     "fewer GPUs dividing the global batch did not fit it).")
        return more
    found.note = (f"Nothing fits on one {gpu.name}, nor with FSDP2 on {', '.join(map(str, counts)) or 'more GPUs'} "
                  f"(the GPU counts up to {MAX_GPUS} that divide GLOBAL_BATCH={global_batch}): raise GLOBAL_BATCH for "
                  "more GPUs, or opt in to techniques that save more (TECHNIQUES=8bit lora ...).")
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
    options(given.techniques)  # an unknown or unchoosable technique: refused before anything is planned
    if given.t:
        raise checks.BadInput(f"T={given.t} names one run; make tune searches the techniques itself (TECHNIQUES= "
                              "opts it in to more)")
    # where the answer goes, checked before minutes of planning
    checks.output_file("TUNE_REPORT", given.tune_report, given.results_file)
    checks.output_dir("PLOTS_DIR", given.plots_dir)
    checks.file_prefix("PLOTSPREFIX", given.plotsprefix)
    if given.verify:
        from utils.tune import verify

        gpu = verify.this_gpu(given)
        if gpu is None:
            return _cpu(given)
        gpus = [gpu]
    cfg, depth, global_batch, world = shape(given)
    start, found = time.perf_counter(), []
    with workers.pool(workers.cores()) as pool:
        for gpu in gpus:
            print(f"tune: {cfg.model} T={cfg.seq}, global batch {global_batch}, on {gpu.name}: planning "
                  f"({workers.cores()} worker processes)...", file=sys.stderr, flush=True)
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
