"""make finetune_check's judging (g), on rows shaped as its runs and its plan write them; and the
command without a GPU."""

import re
import subprocess
import sys

import pytest
from helpers import ROOT
from test_gpu_check import predicted, run_rows, table, verdicts

from utils import results
from utils.drivers.gpu_check import finetune, report
from utils.drivers.gpu_check.judge import FAIL, NA, PASS
from utils.techniques import setup_of

H100 = {"device": "NVIDIA H100 80GB HBM3", "memory_mib": 81_559.0}
ADAPTER = "lora r=8 alpha=16 dropout=0 on q_proj,v_proj"
# what each run's rows say when it ran as itself (the columns finetune.RUNS reads)
AS_ITSELF = {
    "pure_bf16": {},
    "pure_bf16+lora": {"adapter": ADAPTER},
    "qlora": {"adapter": ADAPTER + "; NF4 base: 112 of 112 frozen projections"},
    "pure_bf16+chunked_ce": {"loss_chunks": 8},
    "pure_bf16+offload_activations": {"activation_offload": True},
    "pure_bf16+step_in_backward": {"step_in_backward": True},
    "pure_bf16+paged_8bit": {"optimizer": "bitsandbytes.optim.PagedAdamW8bit"},
    "pure_bf16+torchao_8bit": {"optimizer": "torchao.optim.AdamW8bit"},
    "stack+qlora+checkpointing+chunked_ce": {"adapter": ADAPTER + "; NF4 base: 112 of 112", "attention": "sdpa:flash",
                                             "checkpointing": True, "compile_scope": "blocks_in_checkpoint",
                                             "loss_chunks": 8},
}
ADAPTED = {"pure_bf16+lora", "qlora", "stack+qlora+checkpointing+chunked_ce"}


def finetune_rows(technique, loss=(11.9, 2.1), **changed):
    """A fine-tuning run's rows: bf16 weights, what it ran, its loss from the first step to the last."""
    trainable = 5_636_096 if technique in ADAPTED else 1_235_814_400
    ran = {"dtype": "bf16-weights", "loss_chunks": 1, "activation_offload": False, "step_in_backward": False,
           "checkpointing": False, "n_params": 1_235_814_400, "trainable_params": trainable,
           **AS_ITSELF[technique], **changed}
    rows = run_rows(technique, **ran)
    for row in rows:
        row["loss"] = loss[0] if row["phase"] == "warmup" else loss[1]
    return rows


def judged(tmp_path, *runs, status=0, output=""):
    rows = table(tmp_path, *runs)
    ran = {"plan": finetune.measure.Ran("make plan", status, output, "plan.log", 1.0)}
    return finetune.judge_runs(H100, rows, ran)[0]


def every_run(**changed):
    return [finetune_rows(t, **changed.get(t, {})) for t in finetune.RUNS]


def plans(scale=1.02):
    return [predicted(t, scale) for t in finetune.RUNS]


def test_every_run_is_named_as_make_all_names_it_and_judged_by_recorded_columns():
    for name, expected in finetune.RUNS.items():
        assert setup_of(name)[0] == name
        assert set(expected) <= set(results.COLUMNS), name
    assert set(AS_ITSELF) == set(finetune.RUNS)


def test_runs_that_ran_as_themselves_learned_and_were_planned_pass(tmp_path):
    check = judged(tmp_path, *every_run(), *plans())
    assert check.verdict == PASS, report.text(check)
    lines = verdicts(check, "qlora")
    assert lines["adapter"] == lines["trainable_params"] == lines["loss, first step -> last"] == PASS
    assert lines["peak allocated, predicted / measured"] == PASS
    assert "holds 'NF4 base'" in report.text(check)


@pytest.mark.parametrize("technique, changed, quantity", [
    ("pure_bf16", {"dtype": "bf16-autocast"}, "dtype"),
    ("pure_bf16+lora", {"trainable_params": 1_235_814_400}, "trainable_params"),
    ("qlora", {"adapter": ADAPTER}, "adapter"),
    ("pure_bf16+paged_8bit", {"optimizer": "bitsandbytes.optim.AdamW8bit"}, "optimizer"),
    ("stack+qlora+checkpointing+chunked_ce", {"compile_scope": "blocks"}, "compile_scope"),
    ("pure_bf16+chunked_ce", {"loss": (11.9, 12.0)}, "loss, first step -> last"),
])
def test_a_run_not_as_itself_or_that_did_not_learn_fails(tmp_path, technique, changed, quantity):
    check = judged(tmp_path, *every_run(**{technique: changed}), *plans())
    assert check.verdict == FAIL and verdicts(check, technique)[quantity] == FAIL


def test_a_plan_out_of_tolerance_fails_and_a_refused_one_is_said(tmp_path):
    assert judged(tmp_path, *every_run(), *plans(1.3)).verdict == FAIL
    refused = "qlora          not modelled: why not\n"
    check = judged(tmp_path, *every_run(), *plans(), output=refused)
    line = next(r for r in check.results if r.subject == "qlora" and r.quantity == "plan")
    assert line.verdict == NA and line.value == "not planned: why not"


@pytest.mark.parametrize("planned_total, verdict", [(90_000.0, NA), (20_000.0, FAIL)])
def test_out_of_memory_passes_only_where_the_plan_said_it_does_not_fit(tmp_path, planned_total, verdict):
    runs = [run_rows("pure_bf16", status="oom", reason="CUDA out of memory")]
    runs += [finetune_rows(t) for t in finetune.RUNS if t != "pure_bf16"]
    plan = predicted("pure_bf16")
    plan[0]["device_total_mib"] = planned_total
    check = judged(tmp_path, *runs, *plans()[1:], plan)
    line = next(r for r in check.results if r.subject == "pure_bf16")
    assert line.verdict == verdict and "oom; planned device total" in line.value
    assert not [r for r in check.results if r.subject == "pure_bf16" and r.quantity != "status"]


def test_a_gpu_without_a_table_entry_is_measured_and_not_planned(tmp_path):
    rows = table(tmp_path, *every_run())
    check = finetune.judge_runs({"device": "NVIDIA B300", "memory_mib": 1e6}, rows, {})[0]
    assert check.verdict == PASS
    assert {r.value for r in check.results if r.quantity == "plan"} == {
        "no entry in utils/devices.py's table for this GPU"}


def test_on_this_cpu_it_says_one_line_and_exits_2():
    env = {"PATH": "/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "utils.drivers.gpu_check.finetune"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert re.fullmatch(r"finetune_check: error: no CUDA GPU: .* this check needs one\n", proc.stderr), proc.stderr
