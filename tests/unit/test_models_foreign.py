"""Models the suite did not write: Hugging Face causal LMs from their config (hf:) and any
nn.Module from a file, behind the same interface as the suite's own. Tiny configs on a CPU:
they train under the techniques with falling loss, FLOPs are measured (and agree with the
suite's formula on its own GPT), the planner agrees with a real tracked step, and bad input
is refused in one line."""

import dataclasses
import sys
import textwrap

import huggingface_hub.constants
import pytest
import torch
from helpers import EXAMPLE, ROOT, run_config, set_env

from utils import checks, models, results, settings
from utils.measure import data, loop, memory, train
from utils.measure.train import build_run
from utils.models import flops, foreign
from utils.plan import __main__ as plan_command
from utils.plan import planner
from utils.registry import load_setup

TINY_HF = ("hf:gpt2-tiny", "hf:llama-tiny")


def cfg_of(model, batch=2, seq=16, **extra):
    checked = models.check(model, seq)
    return run_config("test", steps=8, warmup=0, model=model, batch=batch, seq=seq, device="cpu", data="coinflip",
                      seed=0, lr=None, layers=checked.layers, vocab_size=checked.vocab_size, eval_every=0, **extra)


def losses(cfg, technique, steps=6):
    run = build_run(cfg, load_setup(technique))
    _, measured = loop.measure(run, data.batches(cfg), steps, 0)
    return run, measured.loss


@pytest.mark.parametrize("model", TINY_HF)
@pytest.mark.parametrize("technique", ["baseline", "bf16", "flash", "checkpointing", "fused", "8bit", "lion"])
def test_tiny_hugging_face_models_train_under_the_techniques(model, technique):
    run, loss = losses(cfg_of(model), technique)
    assert loss[-1] < loss[0], loss
    record = run.record()
    assert record["flops_source"] == "measured" and record["mlp"] == "own"
    assert record["blocks"] == ("transformer.h (2)" if "gpt2" in model else "model.layers (2)")
    assert record["checkpointing"] == (technique == "checkpointing")
    if technique == "flash":
        assert run.model.attention == "sdpa" and loop.attention_kernel(run) == "sdpa:flash"
    else:
        assert run.model.attention == "manual" and loop.attention_kernel(run) == "manual"


def test_checkpointing_wraps_the_blocks_inside_the_hugging_face_model():
    run = build_run(cfg_of("hf:gpt2-tiny"), load_setup("checkpointing"))
    inner = run.model.module.transformer.h
    assert run.model.blocks is inner and all(type(b).__name__ == "CheckpointWrapper" for b in inner)


def test_the_loss_is_next_token_cross_entropy_against_the_targets_given():
    model = models.build_model("hf:gpt2-tiny", 16)
    x, y = torch.randint(0, 256, (2, 16)), torch.randint(0, 256, (2, 16))
    logits, loss = model(x, y)
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(logits.view(-1, 256), y.view(-1)).item())


def test_layers_sets_the_configs_depth_and_a_hub_id_of_a_shipped_config_is_its_name():
    checked = models.check("hf:gpt2-tiny", 32, layers=3)
    assert checked.layers == 3 and models.build_model("hf:gpt2-tiny", 32, layers=3).blocks_text == "transformer.h (3)"
    assert models.resolve("hf:openai-community/gpt2").name == "hf:gpt2"


def test_the_shipped_configs_build_the_published_architectures():
    # GPT-2 124M as check() counts it (tied embedding once, on fake tensors); the larger ones built on the
    # meta device and counted as transformers counts them (check's fake forward and backward: ~2 s each here)
    assert models.check("hf:gpt2", 16).n_params == 124_439_808

    def built(model):
        with torch.device("meta"):
            return models.build_model(model, 16).num_params()

    assert built("hf:gpt2") == 124_439_808  # the same count both ways
    assert built("hf:gpt2-xl") == 1_557_611_200
    assert built("hf:llama-3.1-8b") == 8_030_261_248  # Llama 3.1 8B's, untied
    assert built("hf:mistral-7b") == 7_241_732_096  # Mistral 7B v0.1's
    assert built("hf:qwen2.5-7b") == 7_615_616_512  # Qwen2.5 7B's, q, k, v biases included
    assert built("hf:mixtral-8x7b") == 46_702_792_704  # Mixtral 8x7B's, every expert
    assert built("hf:qwen3-30b-a3b") == 30_532_122_624  # Qwen3 30B-A3B's, every expert
    assert models.check("hf:gpt2", 16).dropout == 0.1 and models.check("hf:llama-tiny", 16).dropout == 0.0


@pytest.mark.parametrize("preset, seq, layers", [("tiny", 128, None), ("gpt2", 1024, 2)])
def test_measured_flops_of_the_suites_gpt_agree_with_its_formula(preset, seq, layers):
    formula = models.build_model(preset, seq, layers=layers).flops_per_token(seq)
    measured = flops.per_token(("test", preset, seq), lambda: models.build_model(preset, seq, layers=layers), seq)
    assert measured == pytest.approx(formula, rel=0.01)  # biases and norms: in 6N, not matmuls


@pytest.mark.parametrize("technique", ["baseline", "checkpointing", "flash"])
def test_the_planner_on_a_tiny_hugging_face_model_agrees_with_a_real_tracked_step(technique):
    cfg = dataclasses.replace(cfg_of("hf:llama-tiny"), data="fixed")
    setup = load_setup(technique)
    run = build_run(cfg, setup)
    batches = data.batches(cfg)
    for _ in range(planner.STEPS):
        run.step(run, [next(batches) for _ in range(run.accum)])
    real = memory.tracked_step(run, batches)
    fake = planner.plan(setup, cfg, model_cuda=False)
    assert fake.peak_mib == pytest.approx(real["mem_peak_mib"], rel=0.05, abs=0.1)
    assert fake.n_params == run.model.num_params() and fake.record["flops_source"] == "measured"


def test_plan_writes_predicted_rows_for_a_hugging_face_model(results_file, monkeypatch, capsys):
    for name, value in {"RESULTS_FILE": str(results_file), "MODEL": "hf:gpt2-tiny", "TECHNIQUES": "baseline flash",
                        "BATCH": "2", "SEQ": "32"}.items():
        set_env(monkeypatch, name, value)
    assert plan_command.main([]) == 0
    df = results.read(results_file)
    assert set(df["model"]) == {"hf:gpt2-tiny"} and set(df["flops_source"]) == {"measured"}
    assert set(df["blocks"]) == {"transformer.h (2)"} and list(df["attention"]) == ["manual", "sdpa:flash"]


HF_OUTPUT_MODEL = """
    import torch.nn as nn
    import torch.nn.functional as F
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.modeling_outputs import CausalLMOutput

    class Wrapped(nn.Module):
        def __init__(self, seq):
            super().__init__()
            self.lm = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=seq,
                                                 bos_token_id=0, eos_token_id=0))

        def forward(self, idx, targets):
            logits = self.lm(input_ids=idx).logits
            return CausalLMOutput(loss=F.cross_entropy(logits.flatten(0, 1), targets.flatten()), logits=logits)

    def build(seq):
        return Wrapped(seq)
"""

def test_a_model_from_a_file_trains_and_is_costed_like_the_suites(tmp_path):
    run, loss = losses(cfg_of(EXAMPLE), "checkpointing")
    assert loss[-1] < loss[0]
    assert run.record()["blocks"] == "layers (2)" and run.model.attention == "own"
    assert models.check(EXAMPLE, 16).vocab_size == 256 and models.check(EXAMPLE, 16).layers == 2
    (tmp_path / "hf_output.py").write_text(textwrap.dedent(HF_OUTPUT_MODEL))
    wrapped = f"{tmp_path}/hf_output.py:build"
    run, loss = losses(cfg_of(wrapped), "flash")  # a transformers model inside: its attention switches
    assert loss[-1] < loss[0] and run.model.attention == "sdpa" and run.record()["blocks"] == "lm.transformer.h (2)"
    assert models.check(wrapped, 16).vocab_size == 64


def test_what_cannot_apply_to_a_foreign_model_skips_with_the_reason():
    for technique, said in (("swiglu", "brings its own MLP"), ("flash", "no attention switch")):
        with pytest.raises(train.Skip, match=said):
            build_run(cfg_of(EXAMPLE), load_setup(technique))


def _write(folder, name, body):
    path = folder / name
    path.write_text(textwrap.dedent(body))
    return path


BAD_FILES = {
    "raises.py": ("def build(seq):\n    raise RuntimeError('no GPU here')\n", "build(32) raised RuntimeError: no GPU"),
    "no_module.py": ("def build(seq):\n    return 3\n", "build(32) returned int; build(seq) must return an nn.Module"),
    "no_loss.py": ("""
        import torch.nn as nn

        class Logits(nn.Module):
            def __init__(self):
                super().__init__()
                self.embed = nn.Embedding(16, 8)

            def forward(self, idx, targets):
                return self.embed(idx)

        def build(seq):
            return Logits()
        """, "gave a tensor of shape (1, 32, 8) as the loss"),
    "broken.py": ("import no_such_package\n", "importing broken.py raised ModuleNotFoundError"),
}


def _refused(monkeypatch, capsys, results_file, env):
    for name, value in {"RESULTS_FILE": str(results_file), "DEVICE": "cpu", "SEQ": "32", **env}.items():
        set_env(monkeypatch, name, value)
    with pytest.raises(SystemExit) as exit_:
        train.main(load_setup("baseline"), name="baseline", argv=[])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == checks.EXIT_BAD_INPUT and len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("name", BAD_FILES)
def test_a_file_model_that_cannot_be_driven_is_refused_in_one_line(tmp_path, monkeypatch, capsys, results_file,
                                                                   name):
    body, said = BAD_FILES[name]
    path = _write(tmp_path, name, body)
    results.append_rows(results_file, [])
    before = results_file.read_bytes()
    line = _refused(monkeypatch, capsys, results_file, {"MODEL": f"{path}:build"})
    assert line.startswith("baseline: error: MODEL=") and said in line, line
    assert results_file.read_bytes() == before


def test_bad_models_are_refused_in_one_line(tmp_path, monkeypatch, capsys, results_file):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # as HF_HUB_OFFLINE=1 at its import
    t5 = _write(tmp_path, "t5.json", '{"model_type": "t5", "vocab_size": 64, "num_layers": 2}')
    bert = _write(tmp_path, "bert.json", '{"model_type": "bert", "vocab_size": 64, "num_hidden_layers": 1, '
                  '"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}')
    padded = _write(tmp_path, "padded.json", '{"model_type": "llama", "vocab_size": 64, "num_hidden_layers": 1, '
                    '"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64, "pad_token_id": 64}')
    indivisible = _write(tmp_path, "indivisible.json", '{"model_type": "llama", "vocab_size": 64, "num_hidden_layers": '
                         '1, "hidden_size": 65, "num_attention_heads": 4, "intermediate_size": 64}')
    layerless = _write(tmp_path, "layerless.json", '{"model_type": "gpt2", "vocab_size": 64, "n_layer": -1}')
    cases = [
        ({"MODEL": "hf:no-such-owner/no-such-model"}, "hub is out of reach", "MODEL=hf:path/to/config.json"),
        ({"MODEL": f"hf:{indivisible}"}, "transformers refuses its config", "hidden size (65) is not a multiple"),
        ({"MODEL": f"hf:{layerless}"}, "gives a layer count of -1: a model needs at least 1"),
        ({"MODEL": f"hf:{tmp_path}/missing.json"}, "missing.json does not exist"),
        ({"MODEL": f"hf:{t5}"}, "'t5' is not a causal language model"),
        ({"MODEL": f"hf:{bert}"}, "self-attention is bidirectional"),
        ({"MODEL": f"hf:{padded}"}, "transformers could not build it (Padding_idx must be within num_embeddings)"),
        ({"MODEL": f"{tmp_path}/nowhere.py:build"}, "nowhere.py does not exist"),
        ({"MODEL": f"{ROOT}/docs/examples/tiny_transformer.py:make"}, "has no function 'make'", "build"),
        ({"MODEL": "hf:gpt2-tiny", "BLOCKS": "transformer.nothing"}, "BLOCKS=transformer.nothing names nothing"),
        ({"MODEL": "hf:gpt2-tiny", "BLOCKS": "transformer.wte"}, "is a Embedding, not an nn.ModuleList"),
        ({"MODEL": "hf:gpt2-tiny", "SEQ": "512"}, "longer than hf:gpt2-tiny's context (256"),
        ({"MODEL": EXAMPLE, "LAYERS": "3"}, "builds its own depth"),
        ({"MODEL": "tiny", "BLOCKS": "blocks"}, "knows its blocks"),
        ({"MODEL": "gpt5"}, "unknown MODEL 'gpt5'", "hf:<name>"),
    ]
    results.append_rows(results_file, [])
    before = results_file.read_bytes()
    for env, *said in cases:
        monkeypatch.delenv("BLOCKS", raising=False)
        monkeypatch.delenv("LAYERS", raising=False)
        line = _refused(monkeypatch, capsys, results_file, env)
        assert all(words in line for words in said), line
    assert results_file.read_bytes() == before


def test_resolving_a_hugging_face_name_needs_no_torch():
    code = "import sys, utils.models as m; m.resolve('hf:gpt2-xl'); m.arch('x.py:build'); print('torch' in sys.modules)"
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_a_model_with_dropout_says_why_its_parallel_loss_check_cannot_hold():
    from utils.drivers import launch

    ok, line = launch.loss_check("baseline", 2, None, cfg_of("hf:gpt2"), "unused")
    assert ok and "skipped: hf:gpt2 trains with dropout (p=0.1)" in line


def test_a_model_with_no_module_list_has_no_blocks_to_checkpoint(tmp_path):
    path = _write(tmp_path, "flat.py", """
        import torch.nn as nn
        import torch.nn.functional as F

        class Flat(nn.Module):
            def __init__(self):
                super().__init__()
                self.embed, self.head = nn.Embedding(16, 8), nn.Linear(8, 16)

            def forward(self, idx, targets):
                return F.cross_entropy(self.head(self.embed(idx)).flatten(0, 1), targets.flatten())

        def build(seq):
            return Flat()
        """)
    model = f"{path}:build"
    assert models.build_model(model, 8).blocks_text == "none (no nn.ModuleList)"
    with pytest.raises(train.Skip, match="no blocks to checkpoint"):
        build_run(cfg_of(model), load_setup("checkpointing"))
    assert foreign.find_blocks(models.build_model("hf:gpt2-tiny", 8).module) == ("transformer.h", "")


def test_drivers_over_many_models_take_hugging_face_names_and_refuse_what_they_cannot_vary(monkeypatch):
    from utils.drivers import grid

    assert models.resolve_all(["hf:openai-community/gpt2", "tiny", "hf:gpt2"], "SCALING_MODELS") == ["hf:gpt2", "tiny"]
    set_env(monkeypatch, "GRID_MODELS", f"tiny {EXAMPLE}")
    with pytest.raises(checks.BadInput, match="builds its own depth, and the grid varies LAYERS"):
        grid.plan(settings.read())
    set_env(monkeypatch, "GRID_MODELS", "hf:llama-tiny lstm")
    cells, _ = grid.plan(settings.read())
    assert {model for model, _, _ in cells} == {"hf:llama-tiny", "lstm"}
    assert models.label("hf:llama-tiny") == "hf:llama-tiny" and models.label("lstm") == "LSTM"


def test_the_plan_runs_attention_dropout_as_cudas_flash_kernel_does(tmp_path):
    # the CPU's SDPA has no fused kernel with dropout (it materialises T x T); CUDA's flash does
    fields = {**models.resolve("hf:gpt2-tiny").config, "attn_pdrop": 0.1}
    dropped = _write(tmp_path, "dropout.json", __import__("json").dumps(fields))
    plans = {m: planner.plan(load_setup("flash"), cfg_of(m, seq=64)) for m in ("hf:gpt2-tiny", f"hf:{dropped}")}
    assert plans[f"hf:{dropped}"].peak_mib == pytest.approx(plans["hf:gpt2-tiny"].peak_mib, abs=0.1)
    cpu = planner.plan(load_setup("flash"), cfg_of(f"hf:{dropped}", seq=64), model_cuda=False)
    assert cpu.peak_mib > plans["hf:gpt2-tiny"].peak_mib
    # dropout elsewhere: CUDA's fused kernel keeps a bool mask, the CPU's a noise tensor of the input's dtype
    resid = _write(tmp_path, "resid.json", __import__("json").dumps({**fields, "attn_pdrop": 0.0, "resid_pdrop": 0.1}))
    cfg = cfg_of(f"hf:{resid}", batch=8, seq=128)
    cuda, cpu = (planner.plan(load_setup("baseline"), cfg, model_cuda=on) for on in (True, False))
    assert cuda.breakdown["activations"] < cpu.breakdown["activations"] - 0.5


def test_a_compiled_plan_draws_dropout_as_inductor_does(tmp_path):
    # inductor's joint-graph passes (compile_fx.partition_fn, under the fake mode its RNG pass asks for)
    # replace dropout's random ops by its own, drawn in the kernel from a seed: the plan runs, and holds
    # less than eager, which keeps each dropout's noise
    fields = {**models.resolve("hf:gpt2-tiny").config, "resid_pdrop": 0.1, "attn_pdrop": 0.1, "embd_pdrop": 0.1}
    dropped = _write(tmp_path, "dropout.json", __import__("json").dumps(fields))
    cfg = cfg_of(f"hf:{dropped}", batch=8, seq=128)
    compiled, eager = (planner.plan(load_setup(t), cfg, model_cuda=False) for t in ("compile", "baseline"))
    assert compiled.record["compiled"] and compiled.breakdown["activations"] < eager.breakdown["activations"] - 5


def test_drift_and_evaluation_read_a_foreign_models_rows(results_file, monkeypatch):
    from utils.analysis import convergence

    for name, value in {"RESULTS_FILE": str(results_file), "DEVICE": "cpu", "MODEL": "hf:llama-tiny", "BATCH": "2",
                        "SEQ": "16", "STEPS": "3", "WARMUP": "0", "EVAL_EVERY": "3", "EVAL_BATCHES": "1"}.items():
        set_env(monkeypatch, name, value)
    for technique in ("baseline", "fused"):
        train.main(load_setup(technique), name=technique, argv=[])
    df = results.read(results_file)
    drift = convergence.drift(df)
    assert list(drift.index) == ["fused"] and not drift.loc["fused", "flagged"]  # fp32 reordering only
    assert len(df[df["phase"] == "eval"]) == 2 * 2 and set(df["mlp"]) == {"own"}  # before and after

