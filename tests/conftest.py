"""Fixtures every test module may use (shared helpers are tests/helpers.py)."""

import os

import pytest
import torch

from utils import results

# under pytest-xdist (make test runs two workers) the cores are split between the workers: each torch on all
# of them would oversubscribe the machine, and a thread barrier stalls while another process holds a core
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1:
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // WORKERS))  # what the tests start, too
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture
def results_file(tmp_path):
    return tmp_path / "results.csv"


@pytest.fixture
def existing(results_file):
    """A results file holding earlier rows, and its bytes."""
    rows = [
        {**dict.fromkeys(results.COLUMNS, ""), "technique": "baseline", "status": "ok", "step": i, "step_ms": 20.5}
        for i in range(3)
    ]
    results.append_rows(results_file, rows)
    return results_file, results_file.read_bytes()


@pytest.fixture
def one_thread():
    """Time the loop on one intra-op thread: with two, a core taken by another process stalls
    torch's thread barrier and a 3 ms step takes hundreds; the tests that check the clock
    (test_bench*.py) would only see the noise of parallel compute under load."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
