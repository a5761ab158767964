"""Mixture-of-experts models (transformers' grouped matmuls over experts): counted, planned and
trained as any other model, on fake tensors and on this CPU."""

import dataclasses
import json
import re

import pytest
import torch
from helpers import run_config
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

from utils import checks, devices, models
from utils.measure import data, memory
from utils.measure.train import build_run
from utils.models import flops, moe
from utils.plan import planner
from utils.plan.config import Target
from utils.techniques import adapters, setup_of

MOE = "hf:mixtral-tiny"


def _grouped(a_shape, b_shape, offs, grouped_mm=torch.nn.functional.grouped_mm):
    """Output, its dtype, the inputs' gradients' shapes and the FLOPs counted of a grouped matmul's
    forward and backward, in whichever mode is active."""
    a = torch.randn(a_shape, requires_grad=True)
    b = torch.randn(b_shape, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        out = grouped_mm(a, b, offs=torch.tensor(offs, dtype=torch.int32))
        (out * out).sum().backward()  # a dense gradient: the CPU kernel refuses an expanded one
    return out.shape, out.dtype, a.grad.shape, b.grad.shape, counter.get_total_flops()


def test_a_grouped_matmul_runs_on_fake_tensors_in_fp32_as_on_this_cpu_and_its_flops_are_counted():
    # 8 routed rows of width 16 against 2 experts' 16 x 8 weights: 2 x 8 x 16 x 8 FLOPs forward, twice that backward
    real = _grouped((8, 16), (2, 16, 8), [3, 8])
    with FakeTensorMode():
        fake = _grouped((8, 16), (2, 16, 8), [3, 8])
    assert fake == real == ((8, 8), torch.float32, (8, 16), (2, 16, 8), 3 * 2 * 8 * 16 * 8)
    # transformers' own, which its MoE blocks run compiled where the experts are not bf16: counted the same
    moe.count_transformers_fallback()
    assert _grouped((8, 16), (2, 16, 8), [3, 8], torch.ops.transformers.grouped_mm_fallback) == real


def _config():
    with open(models.resolve(MOE).source) as file:
        return json.load(file)


def test_the_experts_flops_are_the_routed_tokens_not_every_expert():
    cfg, seq = _config(), 64
    d, ff, layers, vocab = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    kv = d // cfg["num_attention_heads"] * cfg["num_key_value_heads"]
    dense = layers * (d * d + 2 * d * kv + d * d + d * cfg["num_local_experts"]) + d * vocab  # q, k, v, o, router; head
    experts = layers * cfg["num_experts_per_tok"] * 3 * d * ff  # gate, up, down of each expert a token is sent to
    attention = 12 * seq * d * layers  # eager attention's scores and their use, forward and backward
    models.check(MOE, seq)
    assert flops.MEASURED[(MOE, seq, layers)] == 6 * (dense + experts) + attention


@pytest.mark.parametrize("technique, targets", [
    ("baseline", "auto"), ("pure_bf16+lora", "auto"), ("lora", "q_proj,experts.gate_up_proj,experts.down_proj"),
    ("qlora", "auto")])
def test_a_mixture_of_experts_plans_what_a_real_tracked_step_holds(technique, targets):
    cfg = dataclasses.replace(run_config(technique, model=MOE, batch=4, seq=64, steps=2, warmup=0), data="fixed",
                              lora_targets=targets)
    setup = setup_of(technique)[1]
    run = build_run(cfg, setup)
    batches = data.batches(cfg)
    for _ in range(planner.STEPS):
        loss, _ = run.step(run, [next(batches)])
    real = memory.tracked_step(run, batches)
    fake = planner.plan(setup, cfg, model_cuda=False)
    assert torch.isfinite(loss) and fake.peak_mib == pytest.approx(real["mem_peak_mib"], rel=0.05, abs=0.1)


def test_the_experts_are_the_3d_weights_of_experts_modules_and_lora_targets_only_those():
    class Experts(torch.nn.Module):  # transformers' shape: one (in, out) matrix per expert, stacked
        def __init__(self):
            super().__init__()
            self.num_experts = 4
            self.gate_up_proj = torch.nn.Parameter(torch.zeros(4, 8, 16))

    model = torch.nn.Sequential(torch.nn.Conv1d(8, 8, 3), Experts())
    assert {name: tuple(w.shape) for name, w in moe.expert_weights(model).items()} == {"1.gate_up_proj": (4, 8, 16)}
    # a convolution's 3-D weight is not offered to LoRA as an expert's
    with pytest.raises(checks.BadInput, match=r"no module LoRA adapts \(.*\) or MoE expert weight named '0.weight'"):
        adapters.targets("0.weight", list(dict(model.named_modules())) + list(moe.expert_weights(model)), "m")


@pytest.mark.parametrize("targets, in_nf4, parts", [
    ("auto", True, 4), ("auto", True, 2), ("q_proj,experts.gate_up_proj", False, 4)])
def test_qlora_stores_the_expert_stacks_in_nf4_unless_lora_adapts_them(targets, in_nf4, parts, monkeypatch):
    from torchao.quantization import NF4Tensor

    monkeypatch.setattr(adapters, "DEQUANT_PARTS", parts)  # the tiny model's 4 experts: one or two per part

    cfg = dataclasses.replace(run_config("qlora", model=MOE, batch=2, seq=32, steps=1, warmup=0), data="fixed",
                              lora_targets=targets)
    lora = build_run(dataclasses.replace(cfg, technique="lora"), setup_of("lora")[1])  # the same seed, not in NF4
    bf16 = {name: w.detach().to(torch.bfloat16) for name, w in moe.expert_weights(lora.model.blocks).items()}
    run = build_run(cfg, setup_of("qlora")[1])
    stacks = moe.expert_weights(run.model.blocks)
    owners = {name: (run.model.blocks.get_submodule(name.rpartition(".")[0]), name.rpartition(".")[2])
              for name in stacks}
    stored = {name: owner.parametrizations[attribute] for name, (owner, attribute) in owners.items()
              if torch.nn.utils.parametrize.is_parametrized(owner, attribute)}
    batches = data.batches(cfg)
    for _ in range(2):
        run.step(run, [next(batches)])
    router = sum(p.numel() for name, p in run.model.named_parameters() if "gate.weight" in name)
    assert f"; {router:,} other frozen weights of the blocks not in NF4 (a MoE router's)" in run.adapter
    if not in_nf4:  # PEFT's adapter parametrizes the stack in each forward: left in bf16, said, and nothing piles up
        assert "and 2 MoE expert stacks" in run.adapter
        assert "; 2 MoE expert stacks under LoRA kept in bf16" in run.adapter
        assert not {name for name in stored if name.endswith("gate_up_proj")} and len(stored) == 2
        return
    assert f"and {len(stacks)} MoE expert stacks" in run.adapter and "under LoRA" not in run.adapter
    # one class for every layer's experts (parametrize makes one per module): compiled by blocks, no recompiles
    assert len({type(owner) for owner, _ in owners.values()}) == 1
    for name, described in stacks.items():
        owner, attribute = owners[name]
        weight = getattr(owner, attribute)  # dequantised; the experts' list describes it without computing it
        assert described.is_meta and (described.shape, described.dtype) == (weight.shape, weight.dtype)
        # stored in parts of whole experts, read in its shape and dtype within NF4's rounding (16 levels of each
        # block's absmax: ~10% of a Gaussian weight's rms; a stack read in another layout would be off by ~140%)
        stored_parts = [getattr(stored[name], f"original{i}") for i in range(stored[name].ntensors)]
        experts, rows, columns = weight.shape
        assert [p.shape for p in stored_parts] == [(experts // parts * rows, columns)] * parts
        assert all(isinstance(p, NF4Tensor) and not p.requires_grad for p in stored_parts)
        assert weight.shape == bf16[name].shape and weight.dtype == torch.bfloat16 and len(stored[name]) == 1
        assert _rms(weight - bf16[name]) < 0.2 * _rms(bf16[name])


def _rms(tensor):
    return tensor.float().pow(2).mean().sqrt()


@pytest.mark.parametrize("technique, gpu, refused", [
    ("cudagraphs", "h100-sxm", "(float32, not bf16) copy their groups' offsets to the host"),
    ("pure_bf16+cudagraphs", "a100-80gb", "(bf16 on compute capability 8.0: CUDA's grouped kernel needs 9.x or 10.x)"),
    ("pure_bf16+cudagraphs", "h100-sxm", None),
    # QLoRA's experts, stored in NF4, are read as bf16 stacks: what the grouped matmuls take decides
    ("qlora+cudagraphs", "a100-80gb", "(bf16 on compute capability 8.0: CUDA's grouped kernel needs 9.x or 10.x)"),
    ("qlora+cudagraphs", "h100-sxm", None),
])
def test_cuda_graphs_are_refused_where_the_experts_grouped_matmuls_sync_the_host(technique, gpu, refused):
    cfg = run_config(technique, model=MOE, batch=2, seq=32)
    target = Target(devices.by_key(gpu))
    if refused is None:
        planner.check_modelled(setup_of(technique)[1], cfg, target)
        return
    with pytest.raises(planner.NotModelled, match=re.escape(refused)):
        planner.check_modelled(setup_of(technique)[1], cfg, target)
