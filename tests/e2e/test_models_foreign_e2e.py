"""Models the suite did not write, through make: a shipped tiny config under several techniques,
FSDP over its blocks, a model from a file."""

from helpers import EXAMPLE, run_make

from utils import results


def test_make_all_over_a_shipped_tiny_config_runs_or_skips_every_technique(results_file):
    proc = run_make("all", "TECHNIQUES=baseline flash checkpointing swiglu 8bit", results_file=results_file,
                    MODEL="hf:gpt2-tiny", STEPS="2")
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-1500:]
    assert "all: 4 ok, 1 skipped, 0 failed" in proc.stdout and "swiglu: skipped: hf:gpt2-tiny brings its own MLP" in (
        proc.stdout)
    ok = results.read(results_file).query("status == 'ok'")
    assert set(ok["flops_source"]) == {"measured"} and set(ok["blocks"]) == {"transformer.h (2)"}


def test_fsdp_shards_a_hugging_face_models_blocks_and_trains_as_one_process(results_file):
    proc = run_make("fsdp", "NPROC=2", results_file=results_file, MODEL="hf:llama-tiny", STEPS="3")
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-1500:]
    assert ": match" in proc.stdout
    rows = results.read(results_file).query("parallel == 'fsdp'")
    assert set(rows["blocks"]) == {"model.layers (2)"} and set(rows["world_size"]) == {2}


def test_a_model_from_a_file_trains_through_make(results_file):
    proc = run_make("checkpointing", f"MODEL={EXAMPLE}", results_file=results_file)
    assert proc.returncode == 0 and "checkpointing: ok" in proc.stdout, proc.stderr
    assert set(results.read(results_file)["blocks"]) == {"layers (2)"}


def test_a_mixture_of_experts_trains_under_the_techniques_and_fsdp_as_one_process(results_file):
    proc = run_make("all", "TECHNIQUES=baseline pure_bf16+lora qlora compile", results_file=results_file,
                    MODEL="hf:mixtral-tiny", STEPS="2")
    assert proc.returncode == 0 and "all: 4 ok, 0 skipped, 0 failed" in proc.stdout, proc.stdout[-1500:]
    proc = run_make("fsdp", "NPROC=2", results_file=results_file, MODEL="hf:mixtral-tiny", STEPS="3")
    assert proc.returncode == 0 and ": match" in proc.stdout, proc.stdout[-1500:] + proc.stderr[-1500:]
    rows = results.read(results_file).query("status == 'ok' and phase == 'measured'")
    assert set(rows["flops_source"]) == {"measured"} and set(rows["blocks"]) == {"model.layers (2)"}
    assert "and 4 MoE expert stacks" in rows.query("technique == 'qlora'")["adapter"].iloc[-1]
    # QLoRA sharded: the NF4 projections and expert stacks split among the ranks; its loss is bf16's
    proc = run_make("fsdp", "NPROC=2", "TECHNIQUE=qlora", results_file=results_file, MODEL="hf:mixtral-tiny",
                    STEPS="3")
    assert proc.returncode == 0 and "(one step of a bf16 loss at" in proc.stdout, proc.stdout[-1500:]
