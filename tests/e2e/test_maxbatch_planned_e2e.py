"""make maxbatch PLAN=1 end to end: its planned search, for one GPU, N GPUs and a foreign model (each
answer takes a dozen plans: integration, not unit)."""

from helpers import set_env

from utils import results, settings
from utils.drivers import maxbatch
from utils.plan.config import load_target


def test_the_planned_search_finds_bisections_answer_in_fewer_plans(monkeypatch):
    for name, value in {"MODEL": "tiny", "SEQ": "64", "DEVICE": "cpu"}.items():
        set_env(monkeypatch, name, value)
    set_env(monkeypatch, "GPU_MEMORY_GIB", "1")  # the context (Hopper's 0.73 GiB) and a few dozen tiny batches
    given = settings.read()
    best, trials = maxbatch.planned_search("baseline", load_target(given), given)
    bisected, plain = maxbatch.search(maxbatch.PlannedFit("baseline", load_target(given), given))
    assert best == bisected >= 8  # the same answer as x2 then bisection
    assert len(trials) < len(plain)


def test_maxbatch_answers_what_fits_per_gpu_on_n_gpus(results_file, monkeypatch):
    env = {"TECHNIQUE": "baseline", "PLAN": "1", "GPU_MEMORY_GIB": "0.5", "MODEL": "tiny", "SEQ": "64",
           "PARALLEL": "fsdp", "NPROC": "4", "RESULTS_FILE": str(results_file)}
    for name, value in env.items():
        set_env(monkeypatch, name, value)
    assert maxbatch.main() == 0
    row = results.read(results_file).iloc[-1]
    assert (row["world_size"], row["parallel"]) == (4, "fsdp") and "rank 0 of 4 GPUs (fsdp)" in row["reason"]


def test_maxbatch_plans_a_foreign_model_for_a_gpu(results_file, monkeypatch):
    for name, value in {"RESULTS_FILE": str(results_file), "DEVICE": "cpu", "TECHNIQUE": "baseline", "PLAN": "1",
                        "GPU_MEMORY_GIB": "1.01", "MODEL": "hf:gpt2-tiny", "SEQ": "256"}.items():
        set_env(monkeypatch, name, value)
    assert maxbatch.main() == 0
    row = results.read(results_file).iloc[-1]
    assert (row["kind"], row["model"]) == ("predicted", "hf:gpt2-tiny") and int(row["batch"]) >= 1
