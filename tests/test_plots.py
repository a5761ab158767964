"""Plots and their numbers, from a synthetic results.csv with known answers."""
import pytest

from utils import plots, results

CONFIG = {"device": "Test GPU", "model": "tiny", "batch": 4, "seq": 128, "data": "coinflip", "n_params": 445952}


def _rows(technique, step_ms, steps=20, status="ok", reason="", **extra):
    base = {**dict.fromkeys(results.COLUMNS, ""), **CONFIG, "technique": technique, "run_id": technique, "timestamp_utc": "2026-11-23T00:00:00+00:00", **extra}
    if status != "ok":
        return [{**base, "status": status, "reason": reason}]
    return [{**base, "status": "ok", "phase": "measured", "step": i, "step_ms": step_ms} for i in range(steps)] + [
        {**base, "status": "ok", "phase": "warmup", "step": 0, "step_ms": 5000.0}  # a slow warm-up, never counted
    ]


@pytest.fixture
def synthetic(results_file):
    rows = _rows("baseline", 20.0) + _rows("fast", 10.0) + _rows("slow", 40.0) + _rows("tf32", 0, status="skipped", reason="TF32 is a CUDA mode")
    results.append_rows(results_file, rows)
    return results_file


def test_speedup_is_baseline_over_technique(synthetic):
    df, _ = plots.latest_config(results.read(synthetic))
    assert plots.speedups(df).to_dict() == pytest.approx({"baseline": 1.0, "fast": 2.0, "slow": 0.5})


def test_heatmap_values_are_relative_to_baseline_per_window(synthetic):
    df, _ = plots.latest_config(results.read(synthetic))
    table = plots.relative_windows(df, windows=4)
    assert list(table.columns) == ["0-4", "5-9", "10-14", "15-19"]
    assert table.loc["fast"].tolist() == pytest.approx([0.5] * 4)
    assert table.loc["slow"].tolist() == pytest.approx([2.0] * 4)


def test_all_three_plots_are_written_with_the_prefix(synthetic, tmp_path):
    paths, notes = plots.make_plots(synthetic, tmp_path, prefix="a100_")
    assert sorted(p.name for p in paths) == ["a100_relative_heatmap.png", "a100_speedup_bars.png", "a100_steptime_lines.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" and p.stat().st_size > 10_000 for p in paths)
    assert notes == []


def test_another_configuration_is_not_mixed_in(synthetic):
    newer = {"timestamp_utc": "2026-11-24T00:00:00+00:00", "device": "Other GPU"}
    results.append_rows(synthetic, [{**row, **newer} for row in _rows("baseline", 100.0) + _rows("fast", 25.0)])
    df, note = plots.latest_config(results.read(synthetic))
    assert set(df["device"]) == {"Other GPU"} and "1 other configuration" in note
    assert plots.speedups(df).to_dict() == pytest.approx({"baseline": 1.0, "fast": 4.0})


def test_without_a_baseline_only_the_line_plot_is_made(results_file, tmp_path):
    results.append_rows(results_file, _rows("fast", 10.0))
    paths, notes = plots.make_plots(results_file, tmp_path)
    assert [p.name for p in paths] == ["steptime_lines.png"] and "make baseline" in notes[0]
