"""make gpu_check without a GPU: every check's judging on recorded rows that pass and rows
that fail, the bars printed being the constants, the output folder never overwriting a
results.csv, and the command itself on this CPU (one line, exit 2)."""

import re
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from helpers import ROOT, set_env

from utils import results
from utils import techniques as t
from utils.drivers.gpu_check import judge, judge_memory, measure, probe, report
from utils.drivers.gpu_check.judge import FAIL, NA, PASS
from utils.techniques import stages
from utils.techniques.parallel import World

HOPPER, TURING = (9, 0), (7, 5)
RAN = {"dtype": "fp32", "attention": "manual", "optimizer": "torch.optim.AdamW", "fused": False, "compiled": False,
       "cuda_graphs": False}


def run_rows(technique, status="ok", reason="", steps=10, tokens=100_000.0, wall=95_000.0, alloc=3000.0,
             reserved=None, total=None, skipped=0, mode="", **ran):
    """One run's rows as a measured run writes them: warm-up and measured steps, or one status row."""
    base = {**dict.fromkeys(results.COLUMNS, ""), "run_id": f"{technique}-{mode}-{status}", "technique": technique,
            "status": status, "kind": "measured", "parallel": "none", "world_size": 1, "model": "gpt2", "batch": 4,
            "seq": 256, "device": "NVIDIA H100 80GB HBM3"}
    if status != "ok":
        return [{**base, "reason": reason, "kind": ""}]
    expected = {column: allowed[0] for column, allowed in judge.EXPECTED.get(technique, {}).items()}
    base.update({**RAN, **expected, **ran, "compile_mode": mode, "peak_reserved_mib": reserved or alloc * 1.1,
                 "device_total_mib": total or alloc * 1.3, "wall_tokens_per_s": wall})
    warm = [{**base, "phase": "warmup", "step": i, "tokens_per_s": tokens / 10, "peak_alloc_mib": alloc * 1.05,
             "scaler_skipped": False} for i in range(2)]
    return warm + [{**base, "phase": "measured", "step": i, "step_ms": 1024 / tokens * 1e3, "tokens_per_s": tokens,
                    "peak_alloc_mib": alloc, "scaler_skipped": i < skipped} for i in range(steps)]


def table(tmp_path, *runs):
    """The rows as results.read gives them back from a file of their own (booleans, blanks, numbers)."""
    path = tmp_path / f"results{len(list(tmp_path.glob('*.csv')))}.csv"
    results.append_rows(path, [row for run in runs for row in run])
    return results.read(path)


def verdicts(check, subject):
    return {r.quantity: r.verdict for r in check.results if r.subject == subject}


# (a) precision

SWITCHES = ("cuda.matmul", "cudnn.conv", "cudnn.rnn")
ALL_OFF, ALL_ON = dict.fromkeys(SWITCHES, False), dict.fromkeys(SWITCHES, True)


def reading(error, flags):
    return {"flags": dict(flags), "dtype": "x", "error": error}


def probed(strict=2e-6, tf32=2e-3, capability=HOPPER, overrides=None, strict_flags=ALL_OFF):
    return {"capability": list(capability), "overrides": overrides or {},
            "strict_fp32": reading(strict, strict_flags), "tf32": reading(tf32, ALL_ON)}


@pytest.mark.parametrize("strict, tf32", [(2e-6, 2e-3), (1.03e-5, 1.49e-3)])  # a CPU's; cuBLAS's on an H200
def test_precision_passes_fp32_and_tf32_as_each_should_compute(strict, tf32):
    check = judge.precision(probed(strict, tf32))
    assert check.verdict == PASS and {r.verdict for r in check.results} == {PASS}


@pytest.mark.parametrize("given", [
    {"strict": 4e-4},  # TF32 leaked into the strict fp32 baseline
    {"tf32": 2e-6},  # tf32 switched on in name only
    {"overrides": {"TORCH_ALLOW_TF32_CUBLAS_OVERRIDE": "1"}},
    {"overrides": {"NVIDIA_TF32_OVERRIDE": "0"}},
    {"strict_flags": {**ALL_OFF, "cudnn.rnn": True}},  # an LSTM's fp32 would run TF32
    {"strict_flags": {}},  # nothing read back
])
def test_precision_fails_where_the_setting_is_not_what_ran(given):
    assert judge.precision(probed(**given)).verdict == FAIL


def test_tf32_skipped_is_not_applicable_before_ampere_and_a_failure_after():
    skipped = {"skipped": "TF32 needs compute capability 8.0 (Ampere) or newer; this GPU is 7.5"}
    older = judge.precision({**probed(capability=TURING), "tf32": skipped})
    assert older.verdict == PASS and verdicts(older, "tf32") == {"applied": NA}
    assert judge.precision({**probed(), "tf32": skipped}).verdict == FAIL


def test_strict_fp32_leaves_every_switch_off_and_an_override_is_refused_in_the_probe(monkeypatch):
    run = t.Run(SimpleNamespace(device="cuda", world=World(), technique="x"), torch.nn.Identity())
    monkeypatch.setattr(probe, "matmul_error", lambda device: 2e-6)  # the one CUDA call
    before = stages.tf32_state()["cuda.matmul"]
    try:
        held = probe.reading(run, t.strict_fp32)["flags"]
        assert held and not any(held.values())
        set_env(monkeypatch, "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE", "1")
        refused = probe.reading(run, t.strict_fp32)
        assert "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1" in refused["refused"]
        assert judge.precision({**probed(), "strict_fp32": refused}).verdict == FAIL
    finally:
        stages.set_tf32(before)
    assert set(judge.OVERRIDES) == {stages.TF32_FORCED_ON, stages.TF32_FORCED_OFF}


def test_the_precision_bars_printed_are_the_constants():
    check = judge.precision(probed())
    printed, bars = report.text(check), {(r.subject, r.quantity): r.bar for r in check.results}
    assert bars["strict_fp32", "matmul error"] == f"<= {judge.STRICT_FP32_MAX_ERROR:g}" == "<= 0.0001"
    assert bars["tf32", "matmul error"] == f">= {judge.TF32_MIN_ERROR:g}" == ">= 0.0001"
    assert "<= 0.0001" in printed and ">= 0.0001" in printed and "2.00e-06" in printed


# (b) smoke

def smoke_runs(**replaced):
    return [replaced.get(t) or run_rows(t, skipped=1 if t == "fp16" else 0) for t in judge.SMOKE]


def test_smoke_passes_when_every_technique_ran_as_itself(tmp_path):
    check = judge.smoke(table(tmp_path, *smoke_runs()), HOPPER)
    assert check.verdict == PASS, report.text(check)
    assert verdicts(check, "fp16")["GradScaler skips"] == PASS
    assert f"<= {judge.MAX_SCALER_SKIP_FRACTION:.0%}" == "<= 20%" and "<= 20%" in report.text(check)


@pytest.mark.parametrize("technique, run", [
    ("tf32", run_rows("tf32", dtype="fp32")),
    ("flash", run_rows("flash", attention="sdpa:math")),
    ("stack", run_rows("stack", attention="manual")),
    ("8bit", run_rows("8bit", optimizer="torch.optim.AdamW")),
    ("offload", run_rows("offload", optimizer="torch.optim.AdamW")),
    ("cudagraphs", run_rows("cudagraphs", cuda_graphs=False)),
    ("fp16", run_rows("fp16", skipped=3)),  # 3 of 10 measured steps: over 20%
    ("offload", run_rows("offload", status="skipped", reason="torchao is not importable")),
    ("bf16", run_rows("bf16", status="error", reason="RuntimeError: boom")),
])
def test_smoke_fails_a_technique_that_did_not_run_as_itself(tmp_path, technique, run):
    check = judge.smoke(table(tmp_path, *smoke_runs(**{technique: run})), HOPPER)
    assert check.verdict == FAIL and FAIL in verdicts(check, technique).values()
    assert FAIL not in {r.verdict for r in check.results if r.subject != technique}


def test_smoke_fails_a_missing_run_and_accepts_capability_skips_before_ampere(tmp_path):
    runs = [r for r in smoke_runs() if r[0]["technique"] != "8bit"]
    assert verdicts(judge.smoke(table(tmp_path, *runs), HOPPER), "8bit") == {"status": FAIL}
    why = "this GPU has no native bfloat16 (it needs compute capability 8.0 or newer)"
    older = {t: run_rows(t, status="skipped", reason=why) for t in judge.CAPABILITY_SKIPS}
    rows = table(tmp_path, *smoke_runs(**older))
    assert judge.smoke(rows, TURING).verdict == PASS
    assert judge.smoke(rows, HOPPER).verdict == FAIL


# (c) timing

def test_timing_passes_a_wall_clock_near_the_step_clock(tmp_path):
    check = judge.timing(table(tmp_path, run_rows("baseline", wall=95_000), run_rows("bf16", wall=60_000)))
    assert check.verdict == PASS and len(check.results) == 2
    assert f"{judge.WALL_OVER_STEP_MIN:g} to {judge.WALL_OVER_STEP_MAX:g}" == "0.5 to 1.05" in report.text(check)


@pytest.mark.parametrize("wall", [120_000.0, 30_000.0])  # wall faster than its steps; most time outside them
def test_timing_fails_clocks_that_disagree(tmp_path, wall):
    assert judge.timing(table(tmp_path, run_rows("baseline", wall=wall))).verdict == FAIL


def test_timing_leaves_skipped_runs_and_scaler_skips_out(tmp_path):
    fp16 = run_rows("fp16", skipped=6)
    for row in fp16:
        row["tokens_per_s"] *= 10 if row["scaler_skipped"] else 1  # a skipped update is a fast step
    check = judge.timing(table(tmp_path, fp16, run_rows("tf32", status="skipped")))
    assert check.verdict == PASS and [r.subject for r in check.results] == ["fp16"]
    assert judge.timing(table(tmp_path, run_rows("tf32", status="skipped"))).verdict == FAIL


# (d) graph memory

def graph_runs(cudagraphs=2950.0, reduce_overhead=2700.0, **extra):
    return [run_rows("baseline", alloc=3000.0), run_rows("cudagraphs", alloc=cudagraphs, **extra),
            run_rows("compile", alloc=2800.0, mode="default"),
            run_rows("compile", alloc=reduce_overhead, mode="reduce-overhead")]


def test_graph_memory_passes_graphs_that_count_their_pool(tmp_path):
    check = judge_memory.graph_memory(table(tmp_path, *graph_runs()))
    assert check.verdict == PASS, report.text(check)
    assert verdicts(check, "compile (reduce-overhead)")["peak allocated / compile's"] == PASS
    assert f">= {judge_memory.GRAPHED_MIN_ALLOC_RATIO:g}" == ">= 0.8" and ">= 0.8" in report.text(check)


@pytest.mark.parametrize("given, subject, quantity", [
    ({"cudagraphs": 1500.0}, "cudagraphs", "peak allocated / baseline's"),  # the pool uncounted: the state alone
    ({"reduce_overhead": 1400.0}, "compile (reduce-overhead)", "peak allocated / compile's"),
    ({"reserved": 2000.0}, "cudagraphs", "peak reserved >= allocated"),
    ({"total": 3000.0}, "cudagraphs", "device total >= reserved"),  # below its reserved 3245
])
def test_graph_memory_fails_an_uncounted_pool_or_inconsistent_figures(tmp_path, given, subject, quantity):
    check = judge_memory.graph_memory(table(tmp_path, *graph_runs(**given)))
    assert [(r.subject, r.quantity) for r in check.results if r.verdict == FAIL] == [(subject, quantity)]


def test_graph_memory_fails_without_its_runs(tmp_path):
    check = judge_memory.graph_memory(table(tmp_path, run_rows("baseline")))
    assert check.verdict == FAIL and {r.subject for r in check.results if r.verdict == FAIL} == {
        "cudagraphs", "compile", "compile (reduce-overhead)"}


# (e) ddp and fsdp

MATCHED = "ddp: ...\nloss check: largest |loss - single process at B=8| = 2.1e-06 <= 0.001: match\n"


def test_parallel_is_not_applicable_on_one_gpu_and_judged_on_two():
    one = judge.parallel({}, 1)
    assert one.verdict == NA and one.summary == "not applicable (1 GPU)"
    assert judge.parallel({"ddp": (0, MATCHED), "fsdp": (0, MATCHED)}, 2).verdict == PASS


@pytest.mark.parametrize("outcome", [
    (1, MATCHED),
    (1, "loss check: largest |loss - single process at B=8| = 2.0e-01 > 0.001: MISMATCH: the parallel run ..."),
    (0, "loss check: skipped: gpt2 trains with dropout"),
    (2, "ddp: error: NPROC=2 but this machine has 1 GPU(s)"),
])
def test_parallel_fails_an_exit_or_a_loss_check_that_did_not_match(outcome):
    assert judge.parallel({"ddp": (0, MATCHED), "fsdp": outcome}, 2).verdict == FAIL


# (f) the planner

PLAN_OUTPUT = ("baseline          3,013.9 ...\n"
               "cudagraphs     not modelled: torch.compile mode max-autotune: its kernels are the winners of timing "
               "Triton templates on the GPU\n")


def predicted(technique, scale=1.0):
    return [{**run_rows(technique)[-1], "run_id": f"plan-{technique}", "kind": "predicted", "phase": "predicted",
             "peak_alloc_mib": 3000.0 * scale, "peak_reserved_mib": 3300.0 * scale, "device_total_mib": 3900.0,
             "step_ms": 10.24 * scale}]


def plan_rows(tmp_path, scale=1.0):
    return table(tmp_path, run_rows("baseline"), run_rows("cudagraphs"), predicted("baseline", scale))


def test_plan_passes_a_prediction_within_its_tolerances_and_says_what_it_refused(tmp_path):
    check = judge_memory.plan(plan_rows(tmp_path, 1.05), "h100-sxm", "NVIDIA H100 80GB HBM3", 0, PLAN_OUTPUT)
    assert check.verdict == PASS, report.text(check)
    refused = next(r for r in check.results if r.subject == "cudagraphs")
    assert refused.verdict == NA and refused.value.startswith("not planned: torch.compile mode max-autotune")
    printed = report.text(check)
    for what, (_, tolerance, _) in judge_memory.PLANNED.items():
        assert f"within ±{tolerance:.0%}" in printed, what
    assert "within ±10%" in printed and "within ±15%" in printed and "within ±30%" in printed


def test_plan_fails_a_prediction_out_of_tolerance_or_a_plan_that_failed(tmp_path):
    check = judge_memory.plan(plan_rows(tmp_path, 1.2), "h100-sxm", "NVIDIA H100 80GB HBM3", 0, PLAN_OUTPUT)
    assert verdicts(check, "baseline")["peak allocated, predicted / measured"] == FAIL
    unplanned = table(tmp_path, run_rows("baseline"))
    assert judge_memory.plan(unplanned, "h100-sxm", "NVIDIA H100 80GB HBM3", 2, "plan: error: ...").verdict == FAIL


def test_plan_is_not_applicable_for_a_gpu_without_a_table_entry(tmp_path):
    check = judge_memory.plan(plan_rows(tmp_path), None, "NVIDIA B300", None, "")
    assert check.verdict == NA and "no entry" in check.summary


# the measuring side, where no GPU is needed

def test_on_this_cpu_it_says_one_line_and_exits_2():
    env = {"PATH": "/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "utils.drivers.gpu_check"], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert re.fullmatch(r"gpu_check: error: no CUDA GPU: torch \S+ \(CUDA \S+\) sees none; this check needs one\n",
                        proc.stderr), proc.stderr


def test_the_output_folder_never_overwrites_a_results_file(tmp_path):
    folder = tmp_path / "docs" / "results" / "gpu"
    assert measure.prepare(folder) is None and folder.is_dir()
    results.append_rows(folder / "results.csv", run_rows("baseline"))
    before = (folder / "results.csv").read_text()
    backup = measure.prepare(folder)
    assert backup.name.startswith("results.csv.") and backup.read_text() == before
    assert not (folder / "results.csv").exists()
    (folder / "results.csv").write_text(before + "\n")  # a later file, moved aside at once
    try:
        again = measure.prepare(folder)
    except results.ResultsFileError:  # within the same second its backup's name is taken: nothing moves
        again = folder / "results.csv"
    assert again != backup and again.read_text() == before + "\n" and backup.read_text() == before
    (folder / "results.csv").write_text("not,ours\n")
    with pytest.raises(results.ResultsFileError):
        measure.prepare(folder)
    assert (folder / "results.csv").read_text() == "not,ours\n"


def test_the_folder_is_named_as_make_session_names_it():
    line = next(x for x in (ROOT / "utils/drivers/session.sh").read_text().splitlines() if x.startswith("slug="))
    device = "NVIDIA H100 80GB HBM3"
    shell = subprocess.run(["bash", "-c", f'device="{device}"; {line}; echo "$slug"'], capture_output=True,
                           text=True, check=True).stdout.strip()
    assert measure.slug(device) == shell == "nvidia_h100_80gb_hbm3"


def test_a_command_is_logged_and_one_that_hangs_is_stopped_with_its_children(tmp_path):
    ran = measure.stream(["bash", "-c", "echo said; exit 3"], tmp_path, "said.log")
    assert (ran.status, ran.output, (tmp_path / "said.log").read_text()) == (3, "said\n", "said\n")
    hung = measure.stream(["bash", "-c", "echo waiting; sleep 60 & wait"], tmp_path, "hung.log", timeout=0.5)
    assert hung.status == measure.TIMED_OUT and hung.seconds < 10 and "stopped after 0.5 s" in hung.output


def test_the_caller_settings_stay_behind(monkeypatch):
    set_env(monkeypatch, "STEPS", "500")
    set_env(monkeypatch, "MAKEFLAGS", "STEPS=500")
    set_env(monkeypatch, "NVIDIA_TF32_OVERRIDE", "0")  # not a setting: the runs must see it, as the probe does
    env = measure.child_env()
    assert "SUITE_STEPS" not in env and "MAKEFLAGS" not in env and env["NVIDIA_TF32_OVERRIDE"] == "0"


def test_the_matmul_error_of_fp32_is_under_the_strict_bar_here():
    assert probe.matmul_error("cpu", size=256) < judge.STRICT_FP32_MAX_ERROR


def test_gpu_check_md_holds_every_check_and_command(tmp_path):
    found = [judge.precision(probed()), judge.parallel({}, 1)]
    ran = {"all": measure.Ran("make all TECHNIQUES=...", 0, "", "all.log", 61.0)}
    facts = {"device": "NVIDIA H100 80GB HBM3", "capability": [9, 0], "gpus": 1, "driver": "570.1", "torch": "2.13.0",
             "cuda": "12.8", "git_sha": "abc", "host": "h"}
    text = report.markdown("gpu_check", facts, found, ran, ["shape"])
    assert "## (a) precision: pass" in text and "## (e) ddp and fsdp: not applicable (1 GPU)" in text
    assert "| `make all TECHNIQUES=...` | 0 | 61 | [all.log](all.log) |" in text and "git abc" in text
