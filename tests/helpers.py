"""What several test modules share: a tiny CPU configuration, ways to run a script, make or
a command in-process, the one line a refused command says, synthetic results rows and output
with known answers, and tiny runs built in this process. Test modules import this, never
each other (tests/unit/ and tests/e2e/ alike)."""

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from utils import results, settings
from utils import techniques as t
from utils.measure import config, data, loop
from utils.models import build_model
from utils.plan.config import load_config

ROOT = Path(__file__).resolve().parents[1]
# docs/models.md's model from a file: MODEL=<path>.py:<function>
EXAMPLE = f"{ROOT}/docs/examples/tiny_transformer.py:build"

# small enough that a technique runs in a second or two on a CPU (compile: ~20 s)
TINY = {"STEPS": "3", "WARMUP": "1", "MODEL": "tiny", "BATCH": "2", "SEQ": "16", "DEVICE": "cpu"}
# make's own variables of a `make test` that may be running these tests: not the tests' own
INHERITED = ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")


def environ(values):
    """`values` as a command's environment holds them: settings namespaced (SUITE_STEPS) as the
    Makefile passes them, anything else (OMP_NUM_THREADS, HF_HUB_OFFLINE) as given."""
    named = {k: v for k, v in values.items() if k in settings.BY_NAME}
    return {**{k: str(v) for k, v in values.items() if k not in named}, **settings.environ(named)}


def run_config(technique, **fields):
    """A RunConfig as config.load builds it from the settings' defaults (the model, batch, sequence
    and device of `fields`, else tiny, 2, 16, this CPU), the other `fields` over it."""
    shape = {"model": "tiny", "batch": 2, "seq": 16, "device": "cpu"}
    given = dataclasses.replace(settings.read(env={}), **{k: fields.get(k, v) for k, v in shape.items()})
    return dataclasses.replace(config.load(technique, given, check_results=False), **fields)


def tiny_env(results_file, **extra):
    """This environment without a running `make test`'s settings and make variables, with the tiny
    settings, RESULTS_FILE and `extra`; the suite's folder first on PYTHONPATH, as the Makefile puts it
    (pytest run with a GPU box's own python3, where no .venv puts it on the path)."""
    env = {k: v for k, v in os.environ.items() if k not in INHERITED and not k.startswith(settings.PREFIX)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), env.get("PYTHONPATH"))))
    return {**env, **environ({**TINY, "RESULTS_FILE": str(results_file), **extra})}


def set_env(monkeypatch, name, value):
    """monkeypatch.setenv, a setting namespaced as the Makefile passes it."""
    for key, text in environ({name: value}).items():
        monkeypatch.setenv(key, text)


def run_script(name, results_file, **extra):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / f"{name}.py")], env=tiny_env(results_file, **extra),
                          capture_output=True, text=True, cwd=ROOT)


def run_make(*args, results_file, cwd=ROOT, **extra):
    return subprocess.run(["make", "--no-print-directory", *args, f"PYTHON={sys.executable}"],
                          env=tiny_env(results_file, **extra), capture_output=True, text=True, cwd=cwd)


def one_line(text):
    """The one line a command said on `text` (its stderr), failing if it said more."""
    # make's own "make: *** [Makefile:N: target] Error 2" trailer is make's, not ours
    lines = [line for line in text.strip().splitlines() if line and not line.startswith("make: ***")]
    assert len(lines) == 1, text
    return lines[0]


def copy_suite(folder):
    """A copy of the suite in `folder` (to add a technique to); returns scripts/baseline.py's text."""
    for part in ("Makefile", "requirements.txt", "scripts", "utils"):
        copy = shutil.copytree if (ROOT / part).is_dir() else shutil.copy
        copy(ROOT / part, folder / part)
    return (folder / "scripts" / "baseline.py").read_text()


def add_technique(folder, name, script):
    """A technique added to a copied suite as a user adds one: its script, and its row in the
    catalog (the baseline's calls: a script whose own lines are test hooks, not technique calls)."""
    (folder / "scripts" / f"{name}.py").write_text(script)
    catalog = folder / "utils" / "catalog.py"
    row = '    T("baseline", (FP32, ADAMW), tune=NOT_A_CHOICE),\n'
    assert row in catalog.read_text()
    catalog.write_text(catalog.read_text().replace(row, row + f'    T("{name}", (FP32, ADAMW)),\n'))


# synthetic rows and output

# the format of nanoGPT bench.py's lines (its source: print(f"time per iteration: ...ms, MFU: ...%"))
BENCH_OUTPUT = """Compiling model...
0/10 loss: 10.9
time per iteration: 31.2500ms, MFU: 35.10%
0/20 loss: 10.2
time per iteration: 27.7000ms, MFU: 40.00%
"""

CONFIG = {"device": "Test GPU", "model": "tiny", "layers": 2, "batch": 4, "seq": 128, "data": "coinflip",
          "n_params": 445952}


def rows_of(technique, step_ms, steps=20, status="ok", reason="", run_id=None, **extra):
    """Rows of one synthetic run: `step_ms` (a number or a list) per measured step."""
    times = step_ms if isinstance(step_ms, list) else [step_ms] * steps
    base = {
        **dict.fromkeys(results.COLUMNS, ""),
        **CONFIG,
        "technique": technique,
        "run_id": run_id or technique,
        "repeat": 0,
        "timestamp_utc": "2026-11-23T00:00:00+00:00",
        **extra,
    }
    if status != "ok":
        return [{**base, "status": status, "reason": reason}]
    return [
        {**base, "status": "ok", "phase": "measured", "step": i, "step_ms": ms, "tokens_per_s": 512 / (ms / 1e3)}
        for i, ms in enumerate(times)
    ] + [
        {**base, "status": "ok", "phase": "warmup", "step": 0, "step_ms": 5000.0}  # a slow warm-up, never counted
    ]


def last_measured(df):
    """A run's last measured step row (its last row is an evaluation's, with no step figures)."""
    return df[df["phase"] == "measured"].iloc[-1]


def noisy(mean, n=50, runs=1, seed=0):
    """`runs` runs of `n` step times around `mean`, 5% noise."""
    rng = np.random.default_rng(seed)
    return [mean * (1 + 0.05 * rng.standard_normal(n)) for _ in range(runs)]


# a tiny run in this process


def tiny_run(device="cpu"):
    """The baseline (fp32, AdamW) on the tiny model at B=2, T=16."""
    torch.manual_seed(0)
    cfg = run_config("test", steps=10, warmup=2, model="tiny", batch=2, seq=16, device=device, data="coinflip", seed=0,
                     lr=1e-3, layers=2)
    run = t.Run(cfg, build_model("tiny", cfg.seq).to(device))
    t.strict_fp32(run)
    t.adamw(run)
    return run


def bare_run(accum=1, data_source="coinflip"):
    """The tiny model at B=2, T=16 with nothing applied yet: each technique applies itself;
    `build` builds it again (gated_mlp rebuilds it with its MLP)."""
    cfg = run_config("test", steps=3, warmup=0, model="tiny", batch=2, seq=16, device="cpu", data=data_source, seed=0,
                     lr=1e-3, accum=accum)

    def build(mlp="gelu"):
        torch.manual_seed(0)
        return build_model("tiny", 16, mlp=mlp)

    return t.Run(cfg, build(), build=build)


def plan_cfg(world, model="tiny", batch=4, seq=128):
    """The baseline's run config as the planner reads it (DATA=fixed, on this CPU) for `world`'s ranks."""
    cfg = load_config("baseline", settings.read(env={}), world=world, model=model, batch=batch, seq=seq, data="fixed")
    return dataclasses.replace(cfg, device="cpu")


def measure_run(run, steps=10, warmup=2):
    return loop.measure(run, data.batches(run.cfg), steps, warmup)
