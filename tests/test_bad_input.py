"""Bad input: one line naming the problem, a non-zero exit, and results.csv kept intact."""
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT, run_make, run_script, tiny_env
from utils import results, train
from utils import techniques as t


@pytest.fixture
def existing(results_file):
    """A results file holding earlier rows, and its bytes."""
    rows = [{**dict.fromkeys(results.COLUMNS, ""), "technique": "baseline", "status": "ok", "step": i, "step_ms": 20.5} for i in range(3)]
    results.append_rows(results_file, rows)
    return results_file, results_file.read_bytes()


def _one_line(text):
    # make's own "make: *** [Makefile:N: target] Error 2" trailer is make's, not ours
    lines = [line for line in text.strip().splitlines() if line and not line.startswith("make: ***")]
    assert len(lines) == 1, text
    return lines[0]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["baseline", "STEPS=abc"], "STEPS must be a positive integer, got 'abc'"),
        (["baseline", "STEPS=0"], "STEPS must be a positive integer, got '0'"),
        (["baseline", "BATCH=-4"], "BATCH must be a positive integer"),
        (["baseline", "MODEL=gpt5"], "unknown MODEL 'gpt5'"),
        (["baseline", "DEVICE=tpu"], "DEVICE must be auto, cpu or cuda"),
        (["baseline", "DATA=/no/such/file.txt"], "DATA='/no/such/file.txt'"),
        (["all", "STEPS=abc"], "STEPS must be a positive integer"),
        (["all", "TECHNIQUES=baseline nope"], "unknown technique nope"),
        (["nope"], "unknown target or technique 'nope'"),
    ],
)
def test_bad_settings(existing, args, expected):
    results_file, before = existing
    proc = run_make(*args, results_file=results_file)
    assert proc.returncode != 0
    assert expected in _one_line(proc.stderr)
    assert results_file.read_bytes() == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a machine without CUDA")
def test_cuda_asked_for_on_a_machine_without_it(existing):
    results_file, before = existing
    proc = run_script("baseline", results_file, DEVICE="cuda")
    assert proc.returncode == 2 and "sees no CUDA GPU" in _one_line(proc.stderr)
    assert results_file.read_bytes() == before


@pytest.mark.parametrize("content", [b"step,ms\n1,2\n", b"run_id,technique\n\x00\x01garbage"])
def test_foreign_or_corrupted_results_file(results_file, content):
    results_file.write_bytes(content)
    proc = run_make("baseline", results_file=results_file)
    assert proc.returncode == 2 and "left unchanged" in _one_line(proc.stderr)
    assert results_file.read_bytes() == content


def test_out_of_memory_is_recorded_and_exits_non_zero(existing, monkeypatch, capsys):
    results_file, before = existing
    monkeypatch.setenv("RESULTS_FILE", str(results_file))

    def setup(run):
        t.strict_fp32(run)
        t.adamw(run)

        def oom(*args):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

        run.train_model = oom

    with pytest.raises(SystemExit) as exit_:
        train.main(setup, name="oomtest", argv=["--steps", "2", "--model", "tiny", "--device", "cpu"])
    assert exit_.value.code == train.EXIT_OOM
    assert "oomtest: oom: out of memory at B=4 T=128" in _one_line(capsys.readouterr().err)
    after = results_file.read_bytes()
    assert after.startswith(before)  # earlier rows untouched; one status row added
    row = results.read(results_file).iloc[-1]
    assert (row["technique"], row["status"]) == ("oomtest", "oom") and "Tried to allocate" in row["reason"]


def test_a_killed_run_writes_nothing(existing):
    results_file, before = existing
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "baseline.py")], env=tiny_env(results_file, STEPS="100000"), stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert "measured steps" in proc.stdout.readline()  # started: training is under way
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert results_file.read_bytes() == before


def test_an_interrupted_run_writes_nothing_and_says_so(existing):
    results_file, before = existing
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "baseline.py")], env=tiny_env(results_file, STEPS="100000"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert "measured steps" in proc.stdout.readline()
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == train.EXIT_INTERRUPTED and "nothing was written" in _one_line(err)
    assert results_file.read_bytes() == before
