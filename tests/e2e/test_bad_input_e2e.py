"""A run killed or interrupted while it trains writes nothing to results.csv and, interrupted,
says so."""

import signal
import subprocess
import sys
import time

from helpers import ROOT, one_line, tiny_env

from utils.measure import train


def test_a_killed_run_writes_nothing(existing):
    results_file, before = existing
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "baseline.py")],
        env=tiny_env(results_file, STEPS="100000"),
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
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
    )
    assert "measured steps" in proc.stdout.readline()
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == train.EXIT_INTERRUPTED and "nothing was written" in one_line(err)
    assert results_file.read_bytes() == before
