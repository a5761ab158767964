"""`make scaling`: techniques x model sizes -> tokens/s and peak memory against parameter count.

For each technique, the models of SCALING_MODELS (presets, hf: configs such as the shipped
hf:gpt2 hf:gpt2-xl hf:cerebras-gpt-2.7b, or files) run smallest first as short measured runs
(the technique's script, 5 measured steps after one warm-up, a fresh process each, rows
appended to RESULTS_FILE). The first model that fails, runs out of memory or takes longer
than SCALING_TIMEOUT seconds, and every larger one, is planned instead (`make plan`'s
predicted rows: memory only, since a fake step has no speed). The plot draws measured points
solid and predicted ones hollow and dashed: PLOTS_DIR/<PLOTSPREFIX>scaling.png.

usage: python -m utils.drivers.scaling   (SCALING_TECHNIQUES, SCALING_MODELS, SCALING_TIMEOUT,
BATCH, SEQ, PLOTS_DIR, PLOTSPREFIX and the run settings from the environment)
"""

import os
import sys

from utils import checks, models, registry, results, settings
from utils.drivers.runner import run
from utils.plan import planner
from utils.plan.config import load_config, load_target, planned_device, predicted_row
from utils.plots.memory import plot_scaling
from utils.techniques import setup_of

RUN_STEPS = {"STEPS": 5, "WARMUP": 1, "REPEATS": 1}
SHAPE = {"batch": 1, "seq": 256}  # one shape for every model (BATCH / SEQ override it): GPT2-XL's T=256


def measure(technique, model, size, timeout):
    """A short measured run at `size` ({batch, seq}): (True if it finished ok within the timeout, its run id or
    None)."""
    shape = {name.upper(): value for name, value in size.items()}
    outcome = run(technique, {**RUN_STEPS, "MODEL": model, **shape}, capture=True, timeout=timeout)
    if outcome.status == "timeout":
        print(f"scaling: {technique} on {model}: over {timeout:g} s, planned from here on", flush=True)
        return False, None
    print(f"scaling: measured {outcome.line}", flush=True)
    return outcome.status == "ok", outcome.run_id


def shape(given):
    """BATCH and SEQ where given, else SHAPE's: {batch, seq}."""
    return {name: getattr(given, name) or default for name, default in SHAPE.items()}


@checks.command("scaling", planner.NotModelled)
def main():
    given = settings.read()
    names = registry.check(list(given.scaling_techniques), "technique in SCALING_TECHNIQUES:")
    sizes = models.resolve_all(list(given.scaling_models), "SCALING_MODELS")
    timeout = given.scaling_timeout
    plots_dir = checks.output_dir("PLOTS_DIR", given.plots_dir)
    prefix = checks.file_prefix("PLOTSPREFIX", given.plotsprefix)
    size = shape(given)
    cfgs = {(n, m): load_config(n, given, model=m, **size) for n in names for m in sizes}
    firsts = {m: cfgs[names[0], m] for m in sizes}
    params = {m: models.count_params(m, cfg.seq, cfg.layers, cfg.blocks) for m, cfg in firsts.items()}
    target = load_target(given)
    for (name, _), cfg in cfgs.items():
        planner.check_modelled(setup_of(name)[1], cfg, target)
    any_cfg = next(iter(cfgs.values()))
    device = planned_device(target)
    run_ids = []  # the figure's rows: a file's older runs are of other devices, shapes or settings
    for name in names:
        planning = False
        for model in sorted(sizes, key=params.get):
            if not planning:
                finished, run_id = measure(name, model, size, timeout)
                run_ids.append(run_id)
                planning = not finished
            if planning:
                plan = planner.plan(setup_of(name)[1], cfgs[name, model], target)
                row = predicted_row(cfgs[name, model], name, plan, device)
                results.append_rows(any_cfg.results_file, [row])
                run_ids.append(row["run_id"])
                print(f"scaling: planned {name} on {model}: {plan.memory.allocated_mib / 1024:.2f} GiB allocated, "
                      f"{plan.memory.total_mib / 1024:.2f} device total on {plan.memory.gpu}", flush=True)
    os.makedirs(plots_dir, exist_ok=True)
    path = os.path.join(plots_dir, f"{prefix}scaling.png")
    drawn = plot_scaling(results.read(any_cfg.results_file), names, any_cfg.batch, any_cfg.seq, path, run_ids)
    print(f"scaling: wrote {drawn}" if drawn else "scaling: nothing to draw")
    return 0


if __name__ == "__main__":
    sys.exit(main())
