"""`make grid`: seed 004's experiment. Every model x depth x optimizer of GRID_MODELS,
GRID_LAYERS and GRID_OPTIMIZERS trains in a fresh process (so one failure cannot poison the
next), with evaluations on held-out data; then GRID_REPORT gets seed 004's table (train and
validation perplexity at each run's best evaluation, sorted by architecture, layers and
optimizer, the best of each architecture bold, with peak memory and wall-clock), the answer
to its question "which configuration if you care about wall-clock, which for generalisation"
computed from those rows, and its figures (a panel per optimizer, a figure per model).

`make grid_report` rebuilds GRID_REPORT from the runs already in RESULTS_FILE: for each cell
of the grid, its newest run.

usage: python -m utils.grid run|report --models "tiny lstm" --layers "1 2 4"
           --optimizers "adam adamw sgd momentum" [--lrs "sgd=0.3"] [--results F] [--out GRID.md]
           [--plots-dir plots] [--prefix P] [--target-loss L]
"""

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from utils import config, convergence, curves, models, results
from utils.run_all import SCRIPTS, known_techniques

FAILED = ("error", "oom")


def run_script(name, overrides):
    """scripts/<name>.py in a fresh process with these environment settings on top of ours;
    returns (status, its one-line summary)."""
    with tempfile.TemporaryDirectory() as tmp:
        summary_file = Path(tmp) / "summary.json"
        env = {**os.environ, **overrides, "SUMMARY_FILE": str(summary_file)}
        proc = subprocess.run([sys.executable, str(SCRIPTS / f"{name}.py")], env=env)
        if summary_file.exists():
            summary = json.loads(summary_file.read_text())
            if proc.returncode == 0 or summary["status"] in FAILED:
                return summary["status"], summary["line"]
        return "error", f"{name}: error: exited with status {proc.returncode}"


def _lrs(text):
    """'sgd=0.3 momentum=0.03' -> {'sgd': '0.3', ...}, each a positive number."""
    out = {}
    for item in text.split():
        name, _, value = item.partition("=")
        config.positive_float(f"GRID_LRS entry {item!r}", value)
        out[name] = value
    return out


def plan(args):
    """[(model, layers, optimizer)] in run order, after checking every setting (bad input
    stops here, before anything runs)."""
    grid_models, optimizers = args.models.split(), args.optimizers.split()
    unknown = [m for m in grid_models if m not in models.PRESETS]
    if unknown:
        raise config.ConfigError(
            f"GRID_MODELS: unknown model {' '.join(unknown)}; presets: {', '.join(models.PRESETS)}"
        )
    missing = [o for o in optimizers if not (SCRIPTS / f"{o}.py").is_file()]
    if missing:
        raise config.ConfigError(
            f"GRID_OPTIMIZERS: unknown technique {' '.join(missing)}; known: {' '.join(known_techniques())}"
        )
    layers = [config.positive_int("GRID_LAYERS", n) for n in args.layers.split()]
    if not (grid_models and layers and optimizers):
        raise config.ConfigError("GRID_MODELS, GRID_LAYERS and GRID_OPTIMIZERS must each name at least one")
    lrs = _lrs(args.lrs)
    stray = set(lrs) - set(optimizers)
    if stray:
        raise config.ConfigError(f"GRID_LRS names {' '.join(sorted(stray))}, which is not in GRID_OPTIMIZERS")
    return list(itertools.product(grid_models, layers, optimizers)), lrs


def check_settings(cells, target):
    """The run settings every cell shares (STEPS, DATA, EVAL_EVERY, ...), checked once."""
    for model in dict.fromkeys(model for model, _, _ in cells):  # the data check depends on the vocabulary only
        cfg = config.load("grid", argv=["--model", model])
    if not cfg.eval_every:
        raise config.ConfigError("the grid compares validation perplexity: EVAL_EVERY=0 turns evaluation off")
    config.check_target(target, cfg.data)


def grid_rows(df, cells):
    """The newest ok run of each cell."""
    ok = df[df["status"] == "ok"]
    chosen = []
    for model, layers, optimizer in cells:
        runs = ok[(ok["model"] == model) & (ok["layers"] == layers) & (ok["technique"] == optimizer)]
        if len(runs):
            chosen.append(runs.sort_values("timestamp_utc")["run_id"].iloc[-1])
    return df[df["run_id"].isin(chosen)]


def report(args, cells, target):
    df = results.read(args.results)
    rows = grid_rows(df, cells)
    convergence.check_target(rows, target)
    table = convergence.best_evaluations(rows)
    if table.empty:
        raise results.ResultsFileError(f"{args.results} has no grid run with evaluations: run make grid first")
    out = Path(args.out)
    figures = curves.grid_figures(rows, table, args.plots_dir, args.prefix)
    target_runs = convergence.time_to_target(rows, target) if target is not None else None
    first = rows.iloc[0]
    settings = (
        f"{first['device']} · data {first['data']} · B={first['batch']} T={first['seq']} · "
        f"{int(table['trained_steps'].max())} training steps at most · torch {first['torch']} · "
        f"suite {first['git_sha']}"
    )
    caption = (
        "Each run at the evaluation of its best validation perplexity (PPL = exp(loss in nats)): the train PPL is "
        "exp of the mean training loss since the evaluation before (seed 004's per-epoch train PPL). *exp*: the "
        "run's number in the grid's order; *eval (step)*: which evaluation, after how many training steps; "
        "*training s*: training wall-clock, warm-up included, evaluations excluded; *peak memory*: allocated on "
        "CUDA, the process's resident set (RSS) on a CPU. Bold: the best validation PPL of each architecture."
    )
    text = (
        f"# Seed 004's grid: GPT and LSTM, by depth and optimizer\n\n{settings}\n\n"
        f"{convergence.best_table(table, target_runs)}\n\n{caption}\n\n"
        f"## Which configuration?\n\n{convergence.answer(table, rows, target)}\n\n"
        + "\n".join(f"![{p.stem}]({os.path.relpath(p, out.parent)})" for p in figures)
        + "\n"
    )
    out.write_text(text)
    print("\n".join(line for line in text.splitlines() if not line.startswith("![")))
    print(f"\ngrid: wrote {out} and {len(figures)} figure(s) in {args.plots_dir}/")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("run", "report"))
    for flag, default in [
        ("models", "tiny lstm"),
        ("layers", "1 2 4"),
        ("optimizers", "adam adamw sgd momentum"),
        ("lrs", ""),
        ("results", "results.csv"),
        ("out", "GRID.md"),
        ("plots-dir", "plots"),
        ("prefix", ""),
        ("target-loss", ""),
    ]:
        parser.add_argument(f"--{flag}", default=default)
    args = parser.parse_args(argv)
    try:
        cells, lrs = plan(args)
        target = convergence.parse_target(args.target_loss)
        if args.mode == "run":
            check_settings(cells, target)
    except (config.ConfigError, convergence.TargetError) as err:
        print(f"grid: error: {err}", file=sys.stderr)
        return 2
    failed = []
    if args.mode == "run":
        for i, (model, layers, optimizer) in enumerate(cells, 1):
            print(f"\n=== [{i}/{len(cells)}] {model}, {layers} layer(s), {optimizer}", flush=True)
            overrides = {
                "MODEL": model,
                "LAYERS": str(layers),
                "LR": lrs.get(optimizer, "auto"),
                "RESULTS_FILE": args.results,
            }
            status, line = run_script(optimizer, overrides)
            if status in FAILED:
                failed.append(line)
        for line in failed:
            print(f"grid: failed: {line}", file=sys.stderr)
    try:
        report(args, cells, target)
    except (results.ResultsFileError, convergence.TargetError) as err:
        print(f"grid: error: {err}", file=sys.stderr)
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
