"""make report: the table's numbers, its bolding, its recommendations, several devices."""

import pytest
from helpers import noisy as _noisy
from helpers import rows_of, run_make

from utils import report, results
from utils.analysis import configs, stats


def _cell(text, technique, column):
    """The cell of `technique`'s row under the header `column` (the table's first line)."""
    header = next(line for line in text.splitlines() if line.startswith("| technique |"))
    return _row_of(text, technique).split("|")[header.split("|").index(f" {column} ")].strip()


def _row_of(text, technique):
    return next(line for line in text.splitlines() if line.startswith(f"| `{technique}`"))


def noisy(mean, seed):
    return [float(v) for v in _noisy(mean, n=30, seed=seed)[0]]


def repeated(technique, mean, seed, runs=3, **extra):
    """Rows of `runs` runs of one technique, each its own process (run_id) and repeat."""
    return [
        row
        for r in range(runs)
        for row in rows_of(technique, noisy(mean, 100 * seed + r), run_id=f"{technique}-{r}", repeat=r, **extra)
    ]


@pytest.fixture
def synthetic(results_file):
    rows = (
        repeated("baseline", 20.0, 1, peak_alloc_mib=2048.0, peak_reserved_mib=3072.0, loss=0.7)
        + repeated("fast", 10.0, 2, peak_alloc_mib=4096.0, peak_reserved_mib=5000.0, loss=0.9)
        + repeated("lean", 30.0, 3, peak_alloc_mib=1024.0, peak_reserved_mib=1500.0, loss=0.8)
        + repeated("adamw", 20.0, 4, peak_alloc_mib=2048.0, peak_reserved_mib=3072.0, loss=0.7)
        + rows_of("tf32", 0, status="skipped", reason="TF32 needs Ampere")
    )
    results.append_rows(results_file, rows)
    return results_file


@pytest.fixture
def no_charts(monkeypatch):
    """The report's text without drawing its charts (~0.7 s a report on a 2-thread VM): for the tests that read
    only text. The charts are drawn by the two tests here that look for them and by test_plots.py."""
    monkeypatch.setattr(report, "plots_for", lambda rows, plots_dir, prefix: ([], []))


def test_table_bolds_the_best_of_each_column(synthetic, tmp_path):
    text = report.build(synthetic, tmp_path / "REPORT.md", tmp_path / "plots")
    lean, base = _row_of(text, "lean"), _row_of(text, "baseline")
    assert "**10." in _cell(text, "fast", "median ms")  # fastest bold
    assert "**1.00 / 1.46**" in lean  # least memory (allocated / reserved GiB)
    assert "**0.700**" in base and "**0.700**" in _row_of(text, "adamw")  # tied best loss, both bold
    assert _cell(text, "fast", "speedup [95% CI]").startswith("**2.0")  # speedup with its CI, bold
    assert "(A/A: the noise floor)" in _row_of(text, "adamw") and "Noise floor:** `adamw`" in text
    assert "†" not in text  # three runs each: no single-run caveat
    assert "skipped" in _row_of(text, "tf32") and "TF32 needs Ampere" in _row_of(text, "tf32")
    assert (tmp_path / "REPORT.md").read_text() == text
    assert "![speedup_bars](plots/speedup_bars.png)" in text


@pytest.mark.usefixtures("no_charts")
def test_recommendations_with_a_budget(synthetic, tmp_path):
    text = report.build(synthetic, tmp_path / "R.md", tmp_path / "plots", budget_gib=2.5)
    assert "**Fastest:** `fast`" in text and "**Least memory:** `lean`" in text
    # baseline and adamw (an A/A pair) fit, `lean` fits but is slower, `fast` does not fit: no technique to name
    assert ("**Fastest within 2.5 GiB:** no technique that fits is shown faster than the baseline; the baseline "
            "itself fits, 2.00 GiB") in text
    text = report.build(synthetic, tmp_path / "R.md", tmp_path / "plots", budget_gib=1.5)
    assert "shown faster than the baseline, and the baseline itself, 2.00 GiB, does not fit" in text


@pytest.mark.usefixtures("no_charts")
def test_the_fastest_within_a_budget_is_shown_faster_across_runs_and_per_token(results_file, tmp_path):
    # `single` is quickest and leanest but one run; `accum` takes 30 ms a step of 2 micro-batches, 15 ms per
    # BATCH x SEQ tokens, so it beats `quick`'s 18 ms step though its steps are slower
    memory = {"peak_alloc_mib": 1000.0, "peak_reserved_mib": 1000.0}
    rows = (repeated("baseline", 20.0, 1, **memory) + repeated("accum", 30.0, 2, accum=2, **memory)
            + repeated("quick", 18.0, 3, **memory) + repeated("big", 5.0, 4, peak_alloc_mib=9000.0)
            + rows_of("single", noisy(10.0, 5), run_id="single", **memory))
    results.append_rows(results_file, rows)
    text = report.build(results_file, tmp_path / "R.md", tmp_path / "plots", budget_gib=2)
    assert "**Not shown by one run†:** `single`" in text and "**Fastest:** `big`" in text
    assert "- **Fastest within 2 GiB:** `accum`, 30.0" in text


@pytest.mark.usefixtures("no_charts")
def test_a_technique_some_of_whose_runs_failed_is_neither_bold_nor_recommended_and_is_named(results_file, tmp_path):
    rows = (repeated("baseline", 20.0, 1) + repeated("fast", 10.0, 2) + repeated("good", 15.0, 3)
            + rows_of("fast", 0, status="oom", reason="CUDA out of memory", run_id="fast-3", repeat=3))
    results.append_rows(results_file, rows)
    text = report.build(results_file, tmp_path / "R.md", tmp_path / "plots")
    assert "**" not in _cell(text, "fast", "median ms") and "**" not in _cell(text, "fast", "speedup [95% CI]")
    assert _cell(text, "good", "median ms").startswith("**") and "**Fastest:** `good`" in text
    assert "- **Left out:** `fast` (1 of 4 runs oom)" in text


@pytest.mark.usefixtures("no_charts")
def test_mfu_is_blank_without_a_peak_and_set_by_peak_tflops(synthetic, tmp_path):
    text = report.build(synthetic, tmp_path / "R.md", tmp_path / "plots")
    assert _cell(text, "fast", "MFU") == "–"
    results.append_rows(synthetic, [{**row, "tflops": 50.0} for row in rows_of("flops", 15.0)])
    text = report.build(synthetic, tmp_path / "R.md", tmp_path / "plots", peak_tflops=100.0)
    assert "50.0%" in _row_of(text, "flops")
    text = report.build(synthetic, tmp_path / "R.md", tmp_path / "plots", peak_tflops=25.0)
    assert "200.0% (> peak: wrong PEAK_TFLOPS?)" in _row_of(text, "flops")


@pytest.mark.usefixtures("no_charts")
def test_peak_tflops_is_the_peak_of_devices_the_table_has_none_for_only_and_the_header_says_which(
        results_file, tmp_path):
    h100 = {"device": "NVIDIA H100 80GB HBM3", "dtype": "bf16-autocast", "tflops": 494.7, "mfu": 0.5}
    rows = rows_of("flops", 15.0, run_id="cpu", tflops=0.05) + rows_of("flops", 1.0, run_id="h100", **h100)
    results.append_rows(results_file, rows)
    text = report.build(results_file, tmp_path / "R.md", tmp_path / "plots", peak_tflops=0.1)
    h100_section, test_gpu_section = text.split("\n## ")[1:3]
    assert _cell(h100_section, "flops", "MFU") == "50.0%"  # against the table's 989.4, not 0.1
    assert _cell(test_gpu_section, "flops", "MFU") == "50.0%"  # against the given 0.1
    assert "`PEAK_TFLOPS=0.1` is the peak of the measured rows of Test GPU:" in text
    text = report.build(results_file, tmp_path / "R.md", tmp_path / "plots", peak_tflops=0.1, device_filter="H100")
    assert "`PEAK_TFLOPS=0.1` was not applied" in text


@pytest.mark.usefixtures("no_charts")
def test_warmup_time_is_its_own_column(synthetic, tmp_path):
    text = report.build(synthetic, tmp_path / "R.md", tmp_path / "plots")
    assert _cell(text, "fast", "warm-up s") == "5.0"  # the one 5000 ms warm-up step


def test_several_devices_get_a_section_each_or_one_by_filter(synthetic, tmp_path):
    other = {"device": "NVIDIA H100 80GB HBM3", "timestamp_utc": "2026-11-24T00:00:00+00:00"}
    results.append_rows(
        synthetic,
        [{**row, **other} for row in rows_of("baseline", 5.0, run_id="h1") + rows_of("fast", 2.5, run_id="h2")],
    )
    text = report.build(synthetic, tmp_path / "R.md", tmp_path / "plots")
    assert text.count("\n## ") == 2 and text.index("NVIDIA H100") < text.index("Test GPU")
    assert (tmp_path / "plots" / "nvidia_h100_80gb_hbm3_tiny_2_layers_b_4_t_128_coinflip_speedup_bars.png").exists()
    filtered = report.build(synthetic, tmp_path / "R.md", tmp_path / "plots", device_filter="H100")
    assert filtered.count("\n## ") == 1 and "Test GPU" not in filtered


def test_make_report_prints_the_table(synthetic, tmp_path):
    proc = run_make(
        "report", f"REPORT={tmp_path / 'R.md'}", f"PLOTS_DIR={tmp_path}", "BUDGET_GIB=abc", results_file=synthetic
    )
    assert proc.returncode == 2 and "BUDGET_GIB" in proc.stderr
    proc = run_make("report", f"REPORT={tmp_path / 'R.md'}", f"PLOTS_DIR={tmp_path}", results_file=synthetic)
    assert proc.returncode == 0, proc.stderr
    table = [line for line in proc.stdout.splitlines() if line.startswith("| `")]
    assert table and "\n".join(table) in (tmp_path / "R.md").read_text()  # what it printed is what it wrote


@pytest.mark.usefixtures("no_charts")
def test_a_single_run_is_flagged_and_never_called_faster(results_file, tmp_path):
    results.append_rows(
        results_file, rows_of("baseline", noisy(20.0, 1)) + repeated("fast", 10.0, 2) + rows_of("slow", noisy(40.0, 3))
    )
    text = report.build(results_file, tmp_path / "R.md", tmp_path / "plots")
    slow = _row_of(text, "slow")
    assert _cell(text, "fast", "runs") == "3†"  # its own CI spans runs, its speedup leans on one baseline run
    speedup = _cell(text, "fast", "speedup [95% CI]")
    assert "(one run†)" in speedup and "**" not in speedup  # not bold, not best
    assert _cell(text, "slow", "runs") == "1†" and "(one run†)" in slow
    assert "† one run: its CIs cover the noise from step to step within one process only" in text
    assert "**Fastest:** no technique is shown faster" in text
    speedup = stats.summary(results.read(results_file)).loc["fast", "speedup"]
    assert f"**Not shown by one run†:** `fast` {speedup:.2f}×" in text


@pytest.mark.usefixtures("no_charts")
def test_speedups_within_the_noise_floor_are_not_shown(results_file, tmp_path):
    # adamw, identical to the baseline, lands 10% off: a 6% speedup with a CI clear of 1.0 is within that floor
    rows = (
        repeated("baseline", 20.0, 1)
        + repeated("adamw", 22.0, 2)
        + repeated("small", 18.8, 3)
        + repeated("big", 10.0, 4)
    )
    results.append_rows(results_file, rows)
    summary = stats.summary(results.read(results_file))
    floor, _, _ = stats.aa_floor(summary)
    assert floor == pytest.approx(1 - 20 / 22, abs=0.01)
    assert summary.loc["small", "speedup_lo"] > 1.0 and summary.loc["small", "verdict"] == "within the noise floor"
    assert summary.loc["big", "verdict"] == "faster"
    text = report.build(results_file, tmp_path / "R.md", tmp_path / "plots")
    assert "(within the noise floor)" in _row_of(text, "small") and "**Fastest:** `big`" in text
    assert f"differed by {floor:.1%}" in text and "its CI excludes 1.0" in text  # a 10% A/A gap is no accident


@pytest.mark.usefixtures("no_charts")
@pytest.mark.parametrize(
    "memory, said",
    [
        ({"baseline": 50.0, "lean": 20.0, "same": 20.0}, "- **Least memory:** `lean`, `same`, 20.0 MiB tensor peak"),
        ({"baseline": 50.0, "lean": 50.0, "same": 50.0}, "- **Least memory:** none: every technique tracked holds "
         "the same tensor peak"),
        ({}, "- **Least memory:** not comparable here"),
    ],
)
def test_least_memory_on_a_cpu_is_the_tracked_peak_never_the_process_rss(results_file, tmp_path, memory, said):
    tracked = {name: {"mem_peak_mib": mib} for name, mib in memory.items()}
    rows = [row for i, name in enumerate(("baseline", "lean", "same"))
            for row in rows_of(name, 20.0, peak_rss_mib=300.0 + i, **tracked.get(name, {}))]
    results.append_rows(results_file, rows)
    text = report.build(results_file, tmp_path / "R.md", tmp_path / "plots")
    assert said in text and "process peak RSS MiB" in text


@pytest.mark.usefixtures("no_charts")
def test_without_an_aa_run_the_report_says_the_floor_is_not_measured(results_file, tmp_path):
    results.append_rows(results_file, repeated("baseline", 20.0, 1) + repeated("fast", 10.0, 2))
    text = report.build(results_file, tmp_path / "R.md", tmp_path / "plots")
    assert "**Noise floor:** not measured: run `adamw`" in text and "**Fastest:** `fast`" in text


@pytest.mark.usefixtures("no_charts")
def test_combinations_are_techniques_of_the_report_like_any_other(results_file, tmp_path):
    rows = [row for name, ms, peak in (("baseline", 20.0, 900.0), ("flash+checkpointing", 12.0, 300.0),
                                       ("flash", 10.0, 500.0))
            for r in range(3) for row in rows_of(name, noisy(ms, seed=r), run_id=f"{name}{r}", repeat=r,
                                                 peak_alloc_mib=peak, peak_reserved_mib=peak)]
    results.append_rows(results_file, rows)
    text = report.build(results_file, tmp_path / "R.md", tmp_path / "plots", budget_gib=0.4)
    assert "- **Fastest:** `flash`" in text and "- **Least memory:** `flash+checkpointing`" in text
    assert "- **Fastest within 0.4 GiB:** `flash+checkpointing`" in text


def test_a_diverged_run_ends_at_nan_and_runs_at_other_settings_are_not_pooled(results_file, tmp_path):
    base = rows_of("baseline", 20.0, lr=6e-4, loss=1.0)
    again = rows_of("baseline", 10.0, run_id="b2", lr=0.01, loss=2.0, timestamp_utc="2026-11-24T00:00:00+00:00")
    diverged = rows_of("sgd", 20.0, lr=1e6, loss=3.0)
    diverged[19]["loss"] = float("nan")  # its last measured step
    results.append_rows(results_file, base + again + diverged)
    name, rows, notes = configs.configurations(results.read(results_file))[0]
    summary = stats.summary(rows)
    assert summary.loc["baseline", "runs"] == 1 and summary.loc["baseline", "final_loss"] == 2.0  # the newest: b2
    assert summary.loc["baseline (lr=0.0006)", "runs"] == 1  # the older LR: a row of its own, never pooled
    assert summary.loc["baseline (lr=0.0006)", "final_loss"] == 1.0
    assert notes == ["baseline: 1 run(s) at other settings than its newest, shown apart as `baseline (lr=0.0006)`"]
    text = report.build(results_file, tmp_path / "R.md", tmp_path / "plots")
    assert "nan (diverged)" in _row_of(text, "sgd") and "shown apart as `baseline (lr=0.0006)`" in text


def test_two_compile_modes_are_two_rows_each_with_its_speedup(results_file, tmp_path):
    def run(name, ms, r, **extra):
        return rows_of(name, noisy(ms, seed=r), run_id=f"{name}{ms}{r}", **extra)

    later = {"timestamp_utc": "2026-11-24T00:00:00+00:00"}  # the default mode ran last: the plain row is its
    results.append_rows(results_file, [row for r in range(3) for row in run("baseline", 20.0, r)
                                       + run("compile", 10.0, r, compile_mode="max-autotune")
                                       + run("compile", 15.0, r, compile_mode="default", **later)])
    # a run that failed before it recorded its settings (blank) fails with the technique's newest
    results.append_rows(results_file, rows_of("compile", 0, status="error", reason="boom", run_id="early", **later))
    summary = stats.summary(configs.configurations(results.read(results_file))[0][1])
    assert summary.loc["compile", "status"] == "ok×3, error×1"
    assert summary.loc["compile (compile_mode=max-autotune)", "runs"] == 3
    assert summary.loc["compile", "speedup"] == pytest.approx(20 / 15, rel=0.03)
    assert summary.loc["compile (compile_mode=max-autotune)", "speedup"] == pytest.approx(2.0, rel=0.03)


@pytest.mark.usefixtures("no_charts")
def test_with_none_shown_faster_the_lowest_time_is_per_micro_batch(results_file, tmp_path):
    # none beats the 20 ms baseline's noise; `accum`'s 36 ms step of 2 micro-batches is 18 ms per BATCH x SEQ tokens,
    # below `near`'s 19 ms step, where a per-step ranking would name `near`
    rows = (repeated("baseline", 20.0, 1, runs=1) + repeated("accum", 36.0, 2, runs=1, accum=2)
            + repeated("near", 19.0, 3, runs=1))
    results.append_rows(results_file, rows)
    text = report.build(results_file, tmp_path / "R.md", tmp_path / "plots")
    fastest = next(line for line in text.splitlines() if line.startswith("- **Fastest:**"))
    assert "no technique is shown faster than the baseline here" in fastest and "tokens is `accum`'s, 17.9" in fastest
