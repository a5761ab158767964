"""`make grid`: the LSTM-vs-GPT grid. Every model x depth x optimizer of GRID_MODELS,
GRID_LAYERS and GRID_OPTIMIZERS trains in a fresh process (so one failure cannot poison the
next), with evaluations on held-out data; then GRID_REPORT gets the grid's table (train and
validation perplexity at each run's best evaluation, sorted by architecture, layers and
optimizer, the best of each architecture bold, with peak memory and wall-clock), the answer
to the grid's question "which configuration if you care about wall-clock, which for generalisation"
computed from those rows, and its figures (a panel per optimizer, a figure per model).

`make grid_report` rebuilds GRID_REPORT from the runs already in RESULTS_FILE: for each cell
of the grid, its newest run.

usage: python -m utils.drivers.grid run|report   (GRID_MODELS, GRID_LAYERS, GRID_OPTIMIZERS,
       GRID_LRS, GRID_REPORT, RESULTS_FILE, PLOTS_DIR, PLOTSPREFIX, TARGET_LOSS from the environment)
"""

import dataclasses
import itertools
import os
import sys
from pathlib import Path

from utils import checks, models, registry, results, settings
from utils.analysis import convergence
from utils.analysis import grid as grid_table
from utils.drivers import all as repeats
from utils.drivers.all import Job
from utils.drivers.runner import FAILED
from utils.measure import config
from utils.plots import curves


def _lrs(text):
    """'sgd=0.3 momentum=0.03' -> {'sgd': '0.3', ...}, each a positive number."""
    out = {}
    for item in text.split():
        name, _, value = item.partition("=")
        checks.number(f"GRID_LRS entry {item!r}", value)
        out[name] = value
    return out


def plan(given):
    """[(model, layers, optimizer)] in run order and the per-optimizer LRs, after checking
    every grid setting of `given` (bad input stops here, before anything runs)."""
    grid_models, optimizers = list(given.grid_models), list(given.grid_optimizers)
    grid_models = models.resolve_all(grid_models, "GRID_MODELS") if grid_models else []
    own_depth = [m for m in grid_models if models.arch(m) == "file"]
    if own_depth:
        raise checks.BadInput(f"GRID_MODELS: {own_depth[0]} builds its own depth, and the grid varies LAYERS "
                              "(GRID_LAYERS): presets and hf: configs only")
    optimizers = registry.check(optimizers, "technique in GRID_OPTIMIZERS:")
    if stray := [o for o in optimizers if not registry.is_optimizer(o)]:
        raise checks.BadInput(f"GRID_OPTIMIZERS: {' '.join(stray)} is not an optimizer (adamw is the baseline's)")
    layers = [checks.integer("GRID_LAYERS", n) for n in given.grid_layers]
    if not (grid_models and layers and optimizers):
        raise checks.BadInput("GRID_MODELS, GRID_LAYERS and GRID_OPTIMIZERS must each name at least one")
    lrs = _lrs(given.grid_lrs)
    stray = set(lrs) - set(optimizers)
    if stray:
        raise checks.BadInput(f"GRID_LRS names {' '.join(sorted(stray))}, which is not in GRID_OPTIMIZERS")
    return list(itertools.product(grid_models, layers, optimizers)), lrs


def check_settings(cells, given, running=True):
    """The run settings every cell shares (STEPS, DATA, EVAL_EVERY, ...), checked once: {model: its run
    config} (`running`: the results file must take rows too)."""
    cfgs = {model: config.load("grid", dataclasses.replace(given, model=model), check_results=running)
            for model in dict.fromkeys(model for model, _, _ in cells)}
    cfg = next(iter(cfgs.values()))
    if not cfg.eval_every:
        raise checks.BadInput("the grid compares validation perplexity: EVAL_EVERY=0 turns evaluation off")
    config.check_target(given.target_loss, cfg.data)
    return cfgs


def grid_rows(df, cells, cfgs):
    """The newest ok run of each cell at each repeat index (REPEATS=3: the three of the last grid), at the
    grid's batch, sequence length and data (`cfgs`: {model: its run config}): a run at others is not its."""
    ok = df[df["status"] == "ok"]
    chosen = []
    for model, layers, optimizer in cells:
        cfg = cfgs[model]
        runs = ok[(ok["model"] == model) & (ok["layers"] == layers) & (ok["technique"] == optimizer)
                  & (ok["batch"] == cfg.batch) & (ok["seq"] == cfg.seq) & (ok["data"] == cfg.data)]
        newest = runs.sort_values("timestamp_utc").drop_duplicates("run_id").groupby("repeat")["run_id"].last()
        chosen += list(newest)
    return df[df["run_id"].isin(chosen)]


def report(paths, cells, cfgs, target):
    df = results.read(paths.results)
    rows = grid_rows(df, cells, cfgs)
    convergence.check_target(rows, target)
    runs = grid_table.best_evaluations(rows)
    table = grid_table.cells(runs) if not runs.empty else runs
    if table.empty:
        raise results.ResultsFileError(f"{paths.results} has no grid run with evaluations: run make grid first")
    out = Path(paths.out)
    figures = curves.grid_figures(rows, table, paths.plots_dir, paths.prefix)
    target_runs = convergence.time_to_target(rows, target) if target is not None else None
    first = rows.iloc[0]
    settings = (
        f"{first['device']} · data {first['data']} · B={first['batch']} T={first['seq']} · "
        f"{int(runs['trained_steps'].max())} training steps at most · torch {first['torch']} · "
        f"suite {first['git_sha']}"
    )
    caption = (
        "Each cell at the evaluation of its best validation perplexity (PPL = exp(loss in nats)), the median over "
        "its runs: the train PPL is exp of the mean training loss since the evaluation before (a per-epoch train "
        "PPL). *exp*: the cell's first run's number in the grid's order; *eval (step)*: which evaluation (of the "
        "median run), after how many training steps; *training s*: training wall-clock, warm-up included, "
        "evaluations excluded; *peak memory*: allocated on CUDA, the process's resident set (RSS) on a CPU; "
        f"*runs*: how many, and how many stalled (a step over {grid_table.STALL}x its run's median: another job took "
        "the machine). Bold: the best validation PPL of each architecture."
    )
    text = (
        f"# The LSTM-vs-GPT grid: by depth and optimizer\n\n{settings}\n\n"
        f"{grid_table.best_table(table, target_runs)}\n\n{caption}\n\n"
        f"## Which configuration?\n\n{grid_table.answer(runs, rows, target)}\n\n"
        + "\n".join(f"![{p.stem}]({os.path.relpath(p, out.parent)})" for p in figures)
        + "\n"
    )
    out.write_text(text)
    print("\n".join(line for line in text.splitlines() if not line.startswith("![")))
    print(f"\ngrid: wrote {out} and {len(figures)} figure(s) in {paths.plots_dir}/")


@dataclasses.dataclass(frozen=True)
class Paths:
    results: str
    out: str
    plots_dir: str
    prefix: str


def paths(given):
    out = given.grid_report
    checks.output_file("GRID_REPORT", out, given.results_file)
    return Paths(given.results_file, out, str(checks.output_dir("PLOTS_DIR", given.plots_dir)),
                 checks.file_prefix("PLOTSPREFIX", given.plotsprefix))


@checks.command("grid", convergence.TargetError)
def main(argv=None):
    mode = (argv or sys.argv[1:] or ["run"])[0]
    given = settings.read()
    cells, lrs = plan(given)
    files = paths(given)
    target = given.target_loss
    cfgs = check_settings(cells, given, running=mode == "run")
    failed = []
    if mode == "run":  # every cell a fresh process, REPEATS rounds interleaved as make all runs them
        jobs = [Job(optimizer, (("MODEL", model), ("LAYERS", str(layers)), ("LR", lrs.get(optimizer, "auto"))),
                    f"{model}, {layers} layer(s), {optimizer}") for model, layers, optimizer in cells]
        state = repeats.run_rounds(jobs, files.results, given.repeats)
        failed = [line for status, line in state.outcomes if status in FAILED]
        for line in failed:
            print(f"grid: failed: {line}", file=sys.stderr)
    report(files, cells, cfgs, target)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
