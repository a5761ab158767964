"""Fixtures every test module may use (shared helpers are tests/helpers.py)."""

import pytest
import torch

from utils import results


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
