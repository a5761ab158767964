"""The parallel plan against a real run: FSDP on fake tensors matches a two-rank gloo run, its memory and its
collectives."""

import json
import subprocess
import sys

import pytest
from helpers import ROOT, plan_cfg, run_make

from utils import registry, results
from utils.plan import planner
from utils.techniques.parallel import World


def test_the_fake_fsdp_plan_matches_a_real_two_rank_gloo_run(results_file):
    shape = {"MODEL": "tiny", "BATCH": "4", "SEQ": "128", "DATA": "fixed"}
    proc = run_make("fsdp", results_file=results_file, NPROC="2", STEPS="2", WARMUP="1", LOSS_CHECK="0",
                    EVAL_EVERY="0", **shape)
    assert proc.returncode == 0, proc.stderr
    real = results.read(results_file).iloc[-1]
    assert real["world_size"] == 2 and real["mem_peak_mib"] > 0  # rank 0's tracked step
    fake = planner.plan(registry.load_setup("baseline"), plan_cfg(World("fsdp", 0, 0, 2)), model_cuda=False)
    assert fake.peak_mib == pytest.approx(real["mem_peak_mib"], rel=0.05)


def test_the_planned_collectives_are_a_real_two_rank_gloo_runs(tmp_path):
    out = tmp_path / "collectives.json"
    probe = ROOT / "tests" / "e2e" / "collectives_probe.py"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(probe), str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    real = [tuple(pair) for pair in json.loads(out.read_text())]
    fake = planner.plan(registry.load_setup("baseline"), plan_cfg(World("fsdp", 0, 0, 2)), model_cuda=False)
    planned = [(op.name, op.bytes) for op in fake.ops if op.kind == "collective"]
    # FSDP2's all-gathers (forward, again in backward) and reduce-scatters: the same, in order, of the same size
    assert planned == real and {name for name, _ in real} == {"all_gather", "reduce_scatter"}


def test_make_plan_of_a_compiled_transformers_model_under_fsdp_says_nothing_of_view_tensors(results_file):
    # a compiled block returns a view of inductor's buffer, which FSDP2 warns of; transformers' blocks never add
    # to it in place, so the warning would be noise on every such plan
    proc = run_make("plan", results_file=results_file, MODEL="hf:llama-tiny", PARALLEL="fsdp", NPROC="2",
                    GPU="h100-sxm", TECHNIQUES="compile")
    assert proc.returncode == 0, proc.stderr
    assert results.read(results_file).iloc[-1]["status"] == "ok"
    assert "view tensor" not in proc.stderr
