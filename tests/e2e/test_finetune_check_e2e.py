"""make finetune_check's own runs, at a tiny shape on this CPU: every fine-tuning run writes the
columns its judging reads, each ran as itself and its loss fell (no plan: a CPU has no entry in
the GPU table)."""

from utils.drivers.gpu_check import finetune, measure, report
from utils.drivers.gpu_check.judge import NA, PASS
from utils.measure import env

TINY = {**finetune.SETTINGS, "MODEL": "hf:llama-tiny", "BATCH": "2", "SEQ": "64", "STEPS": "4", "WARMUP": "2"}


def test_the_checks_runs_write_what_its_judging_reads(tmp_path):
    probe = {"device": env.capture("cpu")["device"], "memory_mib": float("inf")}
    ran = finetune.measure_runs(tmp_path, probe, TINY)
    assert set(ran) == {"all"} and ran["all"].status == 0, ran["all"].output[-2000:]
    check = finetune.judge_runs(probe, measure.rows(tmp_path), ran)[0]
    assert check.verdict == PASS, report.text(check)
    judged = {r.subject for r in check.results if r.verdict == PASS}
    assert judged == set(finetune.RUNS)
    assert {r.verdict for r in check.results if r.quantity == "plan"} == {NA}
