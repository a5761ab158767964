"""Shared helpers: a tiny CPU configuration, and ways to run scripts and make."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# small enough that a technique runs in a second or two on a CPU (compile: ~20 s)
TINY = {"STEPS": "3", "WARMUP": "1", "MODEL": "tiny", "BATCH": "2", "SEQ": "16", "DEVICE": "cpu"}


def tiny_env(results_file, **extra):
    # a clean slate: not the variables of a `make test` that may be running these tests
    inherited = ("SUMMARY_FILE", "TECHNIQUES", "PYTHON", "MAKELEVEL", "MAKEFLAGS", "MFLAGS", "PLOTSPREFIX", "PLOTS_DIR")
    env = {k: v for k, v in os.environ.items() if k not in inherited}
    return {**env, **TINY, "RESULTS_FILE": str(results_file), **extra}


def run_script(name, results_file, **extra):
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / f"{name}.py")],
        env=tiny_env(results_file, **extra),
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def run_make(*args, results_file, **extra):
    return subprocess.run(
        ["make", "--no-print-directory", *args, f"PYTHON={sys.executable}"],
        env=tiny_env(results_file, **extra),
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def copy_suite(folder):
    """A copy of the suite in `folder` (to add a script to); returns scripts/baseline.py's text."""
    for part in ("Makefile", "requirements.txt", "scripts", "utils"):
        copy = shutil.copytree if (ROOT / part).is_dir() else shutil.copy
        copy(ROOT / part, folder / part)
    return (folder / "scripts" / "baseline.py").read_text()


@pytest.fixture
def results_file(tmp_path):
    return tmp_path / "results.csv"


def pytest_configure(config):
    # torch.jit deprecation noise from inside bitsandbytes' import, not from this suite
    config.addinivalue_line("filterwarnings", "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
    # seaborn 0.13 calling matplotlib 3.11 APIs it deprecates, not this suite
    config.addinivalue_line("filterwarnings", "ignore:vert. bool was deprecated")
    config.addinivalue_line(
        "filterwarnings", "ignore:The set_bad function will be deprecated:PendingDeprecationWarning"
    )
