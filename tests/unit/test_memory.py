"""Memory columns of a real run, and the report's memory section from measured, predicted and
maxbatch rows."""

import pytest
from helpers import set_env, tiny_env

from utils import registry, report, results
from utils.measure import memory, train

BASE = {"device": "NVIDIA H100 80GB HBM3", "model": "gpt2", "batch": 16, "seq": 1024, "data": "coinflip",
        "status": "ok", "timestamp_utc": "2026-11-23T00:00:00+00:00", "host": "h", "git_sha": "x", "torch": "2.13",
        "driver": "1", "cuda": "13.0"}


def _run(technique, peak_alloc, parts, retries=0, kind="measured", phase="measured", run_id=None, cuda=(None,) * 2):
    """A row; `cuda`: (peak reserved, device total) MiB, as a GPU run records or a plan predicts them."""
    tracked = memory.columns(dict(zip(results.MEMORY_PARTS, parts)), sum(parts))
    row = {**BASE, **tracked, "run_id": run_id or technique + kind, "technique": technique, "kind": kind,
           "phase": phase, "step": 0, "alloc_retries": retries, "peak_alloc_mib": peak_alloc,
           "peak_reserved_mib": cuda[0], "device_total_mib": cuda[1], "accum": 1}  # what ran, as runs and plans record
    if kind == "measured":
        row.update(step_ms=10.0, tokens_per_s=1.0, loss=1.0)
    else:
        row["device"] = "H100 SXM 80GB (planned on AMD EPYC (2 threads))"
    return row


def test_a_run_records_its_breakdown(results_file, monkeypatch):
    for name, value in tiny_env(results_file).items():
        set_env(monkeypatch, name, value)
    train.main(registry.load_setup("lion8bit"), name="lion8bit", argv=[])
    rows = results.read(results_file)
    assert set(rows["kind"]) == {"measured"} and rows["alloc_retries"].isna().all()  # no allocator on a CPU
    parts = rows[[f"mem_{p}_mib" for p in results.MEMORY_PARTS]].iloc[0]
    assert rows["mem_peak_mib"].nunique() == 1 and parts.sum() == pytest.approx(rows["mem_peak_mib"].iloc[0], abs=0.3)
    assert parts["mem_params_mib"] > 0 and parts["mem_optimizer_mib"] > 0


def test_the_memory_section_compares_predicted_with_measured(results_file, tmp_path):
    rows = [
        _run("baseline", 32000, [500, 0, 1000, 25000, 6000]),
        _run("flash", 16000, [500, 0, 1000, 11800, 3100], retries=3, cuda=(17000, 18000)),
        _run("flash", 16200, [500, 0, 1000, 11600, 3100], kind="predicted", phase="predicted", cuda=(17500, 17100)),
        {**BASE, "run_id": "mb", "technique": "flash", "phase": "maxbatch", "kind": "predicted", "batch": 40,
         "reason": "gpt2 T=1024 with flash: largest batch B=40 on a 40 GiB GPU (planned)"},
    ]
    results.append_rows(results_file, rows)
    text = report.build(results_file, tmp_path / "REPORT.md", tmp_path / "plots", budget_gib=17)
    memory_section = text.split("## Memory")[1]
    predicted = next(line for line in memory_section.splitlines() if line.startswith("| `flash` | predicted for H100"))
    # the three CUDA figures, and the errors of allocated (16,200 / 16,000) and device total (17,100 / 18,000)
    assert "| 16,200 | 17,500 | 17,100 | +1.2% / -5.0% |" in predicted
    assert "3 retries" in memory_section
    assert "+16,100" in memory_section  # tracked peaks: 32,500 - 16,400 MiB
    assert "largest batch B=40" in memory_section and "| 40 |" in memory_section
    # judged on the device total: the measured 18,000 MiB does not fit 17 GiB, the predicted 17,100 does
    assert "What fits in 17 GiB:** `flash` (predicted for H100 SXM 80GB, 16.70 GiB device total)" in memory_section
    png = tmp_path / "plots" / "memory_gpt2_b16_t1024.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "](plots/memory_gpt2_b16_t1024.png)" in memory_section
    # the predicted and maxbatch rows form no configuration table of their own
    assert text.count("## NVIDIA H100") == 1


def test_a_model_named_by_its_path_plots_into_a_file_of_the_plots_folder(results_file, tmp_path):
    model = "docs/examples/tiny_transformer.py:build"  # a file's model: slashes and a colon
    rows = [{**_run("baseline", 30, [1, 0, 2, 20, 7]), "model": model}]
    results.append_rows(results_file, rows)
    text = report.build(results_file, tmp_path / "REPORT.md", tmp_path / "plots")
    png = tmp_path / "plots" / "memory_docs_examples_tiny_transformer_py_build_b16_t1024.png"
    assert png.read_bytes()[:4] == b"\x89PNG" and f"](plots/{png.name})" in text


def test_the_memory_section_keeps_depths_and_planned_gpus_apart(results_file, tmp_path):
    parts = [1, 0, 2, 20, 7]
    planned = {"kind": "predicted", "phase": "predicted"}
    rows = [
        {**_run("baseline", 30, parts), "layers": 2}, {**_run("flash", 20, parts), "layers": 4},
        {**_run("flash", 300, parts, run_id="a", **planned), "layers": 2, "device": "A100 40GB (planned on x)"},
        {**_run("flash", 400, parts, run_id="t", **planned), "layers": 2, "device": "T4 (planned on x)"},
        *({**BASE, "run_id": gpu, "technique": "flash", "phase": "maxbatch", "kind": "predicted", "batch": batch,
           "device": f"{gpu} (planned on x)", "reason": "planned"} for gpu, batch in (("A100 40GB", 40), ("T4", 9))),
    ]
    results.append_rows(results_file, rows)
    text = report.build(results_file, tmp_path / "REPORT.md", tmp_path / "plots").split("## Memory")[1]
    two, four = (text.split(f"### gpt2 · {n} layers · B=16 T=1024")[1].split("###")[0] for n in (2, 4))
    assert "predicted for A100 40GB" in two and "predicted for T4" in two and "`flash` | measured" not in two
    assert "`flash` | measured" in four
    assert "| A100 40GB (planned on x) | 40 |" in text and "| T4 (planned on x) | 9 |" in text


def test_a_plan_is_compared_only_with_a_run_of_its_gpu_and_world(results_file, tmp_path):
    parts = [500, 500, 1000, 25000, 6000]
    planned = {"kind": "predicted", "phase": "predicted"}
    rows = [
        {**_run("flash", 16000, parts, cuda=(17000, 17600)), "device": "Tesla T4"},  # measured on a T4
        _run("flash", 16200, parts, run_id="one", cuda=(17500, 18300), **planned),  # planned for an H100
        {**_run("flash", 9000, [130, 130, 250, 6500, 1990], run_id="four", cuda=(9500, 10100), **planned),
         "parallel": "fsdp", "world_size": 4},  # rank 0 of 4 H100s
    ]
    results.append_rows(results_file, rows)
    text = report.build(results_file, tmp_path / "REPORT.md", tmp_path / "plots").split("## Memory")[1]
    one, four = text.split("### gpt2 · B=16 T=1024")[1:]
    assert "rank 0 of 4 (fsdp)" in four and "| 9,000 |" in four and "9,000" not in one  # a section of its own
    predicted = [line for line in text.splitlines() if line.startswith("| `flash` | predicted")]
    assert len(predicted) == 2 and all("| – / – |" in line for line in predicted)  # a T4's run is no H100's truth
    assert (tmp_path / "plots" / "memory_gpt2_b16_t1024_fsdp4.png").exists()
