"""`make scaling`: techniques x model sizes -> tokens/s and peak memory against parameter count
(seed 001's tables as pictures).

For each technique, the models of SCALING_MODELS run smallest first as short measured runs
(the technique's script, 5 measured steps after one warm-up, a fresh process each, rows
appended to RESULTS_FILE). The first model that fails, runs out of memory or takes longer
than SCALING_TIMEOUT seconds, and every larger one, is planned instead (`make plan`'s
predicted rows: memory only, since a fake step has no speed). The plot draws measured points
solid and predicted ones hollow and dashed: PLOTS_DIR/<PLOTSPREFIX>scaling.png.

usage: python -m utils.scaling technique ...   (settings from the environment)
"""

import os
import subprocess
import sys

from utils import config, memreport, planner, results
from utils.model import PRESETS
from utils.plan import load_config, planned_device, predicted_row
from utils.profile import load_setup
from utils.run_all import SCRIPTS, known_techniques

RUN_STEPS = {"STEPS": "5", "WARMUP": "1", "REPEATS": "1"}
SHAPE = {"BATCH": "1", "SEQ": "256"}  # one shape for every model (BATCH / SEQ override it): seed 001's T=256


def measure(technique, model, timeout):
    """A short measured run; True if it finished ok within the timeout."""
    env = {**os.environ, **RUN_STEPS, "MODEL": model, **shape()}
    try:
        proc = subprocess.run([sys.executable, str(SCRIPTS / f"{technique}.py")], env=env, timeout=timeout,
                              capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        print(f"scaling: {technique} on {model}: over {timeout:g} s, planned from here on", flush=True)
        return False
    line = (proc.stdout.strip().splitlines() or proc.stderr.strip().splitlines() or [""])[-1]
    print(f"scaling: measured {line}", flush=True)
    return proc.returncode == 0 and ": ok," in line


def shape():
    return {k: v if (v := os.environ.get(k, "auto")) not in ("", "auto") else default for k, default in SHAPE.items()}


def main(names):
    models = (os.environ.get("SCALING_MODELS") or "").split()
    unknown = [n for n in names if n not in known_techniques()] + [m for m in models if m not in PRESETS]
    if unknown or not names or not models:
        print(f"scaling: error: unknown technique or model {' '.join(unknown) or '(none given)'}; "
              f"techniques: {' '.join(known_techniques())}; models: {' '.join(PRESETS)}", file=sys.stderr)
        return 2
    try:
        timeout = config.positive_float("SCALING_TIMEOUT", os.environ.get("SCALING_TIMEOUT") or "300")
        size = [f"--{k.lower()}={v}" for k, v in shape().items()]
        cfgs = {(n, m): load_config(n, ["--model", m, *size]) for n in names for m in models}
        for (name, _), cfg in cfgs.items():
            planner.check_modelled(load_setup(name), cfg)
    except (config.ConfigError, planner.NotModelled) as err:
        print(f"scaling: error: {err}", file=sys.stderr)
        return 2
    any_cfg = next(iter(cfgs.values()))
    device = planned_device()
    for name in names:
        planning = False
        for model in sorted(models, key=approx_params):
            planning = planning or not measure(name, model, timeout)
            if planning:
                plan = planner.plan(load_setup(name), cfgs[name, model])
                results.append_rows(any_cfg.results_file, [predicted_row(cfgs[name, model], name, plan, device)])
                print(f"scaling: planned {name} on {model}: {plan.peak_mib / 1024:.2f} GiB peak allocated", flush=True)
    plots_dir = os.environ.get("PLOTS_DIR") or "plots"
    os.makedirs(plots_dir, exist_ok=True)
    path = os.path.join(plots_dir, f"{os.environ.get('PLOTSPREFIX', '')}scaling.png")
    drawn = memreport.plot_scaling(results.read(any_cfg.results_file), names, any_cfg.batch, any_cfg.seq, path)
    print(f"scaling: wrote {drawn}" if drawn else "scaling: nothing to draw")
    return 0


def approx_params(model):
    # sort key: GPT-2's 12 L d^2 block weights + the V d embedding
    arch = PRESETS[model][0]
    return 12 * arch["n_layer"] * arch["n_embd"] ** 2 + arch["vocab_size"] * arch["n_embd"]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
