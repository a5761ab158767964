"""A run killed or interrupted while it trains writes nothing to results.csv and, interrupted,
says so; bad input through make: one line, status 2, nothing written."""

import signal
import subprocess
import sys
import time

import pytest
from helpers import ROOT, one_line, run_make, tiny_env

from utils.measure import train


def test_a_killed_run_writes_nothing(existing):
    results_file, before = existing
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "baseline.py")],
        env=tiny_env(results_file, STEPS="100000"),
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        # Ctrl-C as a terminal sends it: a test run started in the background of a non-interactive
        # shell inherits SIGINT ignored, and python keeps an ignored SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert "measured steps" in proc.stdout.readline()  # started: training is under way
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert results_file.read_bytes() == before


def test_an_interrupted_run_writes_nothing_and_says_so(existing):
    results_file, before = existing
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "baseline.py")],
        env=tiny_env(results_file, STEPS="100000"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        # Ctrl-C as a terminal sends it: a test run started in the background of a non-interactive
        # shell inherits SIGINT ignored, and python keeps an ignored SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert "measured steps" in proc.stdout.readline()
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == train.EXIT_INTERRUPTED and "nothing was written" in one_line(err)
    assert results_file.read_bytes() == before


MAKE_CASES = [  # through make: the same one line and status 2, nothing written
    (["baseline", "RESULTS_FILE={tmp}/d"], "RESULTS_FILE={tmp}/d is a folder"),
    (["baseline", "DATA={tmp}/f"], "DATA={tmp}/f: its training split holds 3 tokens"),
    (["plots", "PLOTSPREFIX=a/b_"], "PLOTSPREFIX='a/b_' holds a '/'"),
    (["all", "CI_HALF_WIDTH=2"], "CI_HALF_WIDTH must be a number between 0 and 1"),
    (["reset", "PLOTS_DIR="], "PLOTS_DIR is empty"),  # not rm -f /*.png
    (["reset", "RESULTS_FILE={tmp}/f"], "is not a results file of this suite"),
]


@pytest.mark.parametrize("args, said", MAKE_CASES)
def test_bad_input_through_make(existing, tmp_path, args, said):
    results_file, before = existing
    (tmp_path / "f").write_text("abc\n")
    (tmp_path / "d").mkdir()
    proc = run_make(
        *(arg.format(tmp=tmp_path) for arg in args), results_file=results_file, PLOTS_DIR=str(tmp_path / "plots")
    )
    assert (
        proc.returncode == 2 and said.format(tmp=tmp_path) in one_line(proc.stderr) and "Traceback" not in proc.stderr
    )
    assert results_file.read_bytes() == before and (tmp_path / "f").read_text() == "abc\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "f", "results.csv"]
