"""Fixtures every test module may use (shared helpers are tests/helpers.py)."""

import pytest


@pytest.fixture
def results_file(tmp_path):
    return tmp_path / "results.csv"
