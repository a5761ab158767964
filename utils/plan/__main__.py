"""`make plan` / `make plan_check`: predicted peak GPU memory per technique, on any machine.

make plan        each technique of TECHNIQUES (blank: every script) at MODEL / LAYERS / BATCH /
                 SEQ (MODEL auto: gpt2, the GPU default): predicted peak allocated and its
                 breakdown, printed and appended to RESULTS_FILE as `predicted` rows (never
                 step-time statistics)
make plan_check  the planner against the H100 peaks of ../shared/README.md (GPT-2 124M,
                 B=16, T=1024): predicted, measured, error, and the 10% bar

usage: python -m utils.plan [--check]   (settings from the environment)
"""

import argparse
import sys

from utils import checks, registry, results
from utils.plan import planner, reference
from utils.plan.config import load_config, planned_device, predicted_row
from utils.plan.cuda import CUDA_MODEL, NOT_MODELLED
from utils.results import MEMORY_PARTS
from utils.techniques import setup_of


def _mib(mib):
    return f"{mib:,.1f}"


def plan_techniques(names):
    try:
        cfgs = {name: load_config(name) for name in names}
        setups = {name: setup_of(name)[1] for name in names}
    except checks.BadInput as err:
        print(f"plan: error: {err}", file=sys.stderr)
        return checks.EXIT_BAD_INPUT
    refused = {}
    for name, cfg in cfgs.items():
        try:
            planner.check_modelled(setups[name], cfg)
        except planner.NotModelled as why:
            refused[name] = str(why)
    if len(refused) == len(names):
        print(f"plan: error: the planner cannot model {'; '.join(f'{n}: {w}' for n, w in refused.items())}",
              file=sys.stderr)
        return checks.EXIT_BAD_INPUT
    first = cfgs[names[0]]
    depth = f"{first.layers} layer{'s' * (first.layers != 1)}"
    print(f"plan: {first.model} ({depth}), B={first.batch} T={first.seq}, peak CUDA memory allocated "
          f"per training step (fake tensors, {planner.STEPS} steps; MiB)")
    print(f"{'technique':<14} " + " ".join(f"{h:>10}" for h in ("peak", *MEMORY_PARTS)))
    rows = []
    device = planned_device()
    for name, cfg in cfgs.items():
        if name in refused:
            print(f"{name:<14} not modelled: {refused[name]}", flush=True)
            continue
        plan = planner.plan(setups[name], cfg)
        parts = " ".join(f"{_mib(v):>10}" for v in plan.breakdown.values())
        print(f"{name:<14} {_mib(plan.peak_mib):>10} {parts}", flush=True)
        rows.append(predicted_row(cfg, name, plan, device))
    print("modelled on the CUDA side: " + "; ".join(CUDA_MODEL))
    print("not modelled: " + "; ".join(NOT_MODELLED))
    try:
        results.append_rows(first.results_file, rows)
    except results.ResultsFileError as err:
        print(f"plan: error: {err}", file=sys.stderr)
        return checks.EXIT_BAD_INPUT
    print(f"plan: {len(rows)} predicted rows appended to {first.results_file}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    if args.check:
        return reference.check()
    try:
        names = registry.selected()
    except checks.BadInput as err:
        print(f"plan: error: {err}", file=sys.stderr)
        return checks.EXIT_BAD_INPUT
    return plan_techniques(names)


if __name__ == "__main__":
    sys.exit(main())
