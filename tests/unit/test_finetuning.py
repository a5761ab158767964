"""What fine-tuners use, checked for what each claims on a CPU: pure bf16 weights, the loss in
chunks, offloaded activations, the optimizer step in backward, LoRA's adapters, the paged 8-bit
state; and what the planner makes of each."""

import dataclasses
import functools
import json

import pytest
import torch
from helpers import bare_run, run_config
from torch.distributed._tools.common_utils import get_untyped_storages

from utils import checks, registry
from utils import techniques as t
from utils.measure import data
from utils.models import loss
from utils.plan import fakes, planner
from utils.registry import load_setup
from utils.techniques import adapters, setup_of
from utils.techniques.run import new_run

CFG = run_config("x", steps=1, warmup=0, model="tiny", batch=4, seq=64, device="cpu", data="fixed", seed=0, lr=1e-3)


def _batch(seed=1):
    return next(data.coin_flips(2, 16, "cpu", seed))


def _stepped(*techniques):
    """The tiny model after one AdamW step on one batch with `techniques` applied in order."""
    run = bare_run()
    t.strict_fp32(run)
    for technique in techniques:
        technique(run)
    loss, _ = run.step(run, [_batch()])
    return run, loss


def test_pure_bf16_keeps_weights_gradients_and_state_in_bf16():
    run = bare_run()
    t.strict_fp32(run)
    t.bf16_weights(run)
    t.adamw(run)
    x, y = _batch()
    _, loss = run.train_model(x, y)
    loss.backward()
    assert {p.grad.dtype for p in run.model.parameters()} == {torch.bfloat16}
    run.optimizer.step()
    states = [s for state in run.optimizer.state.values() for s in state.values() if s.dim()]
    assert {p.dtype for p in run.model.parameters()} == {s.dtype for s in states} == {torch.bfloat16}
    assert run.record()["dtype"] == "bf16-weights"


def test_pure_bf16_casts_the_parameters_scores_in_fp32_and_leaves_buffers_as_built():
    cfg = dataclasses.replace(CFG, model="hf:llama-tiny", seq=16)
    run = new_run(cfg, "cpu")
    t.strict_fp32(run)
    t.bf16_weights(run)
    assert {p.dtype for p in run.model.parameters()} == {torch.bfloat16}
    # RoPE's inv_freq stays fp32, as transformers' bf16 models hold it: in bf16 a far position's angle drifts
    assert {b.dtype for name, b in run.model.named_buffers() if name.endswith("inv_freq")} == {torch.float32}
    x, y = _batch()
    logits, loss = run.train_model(x, y)
    assert logits.dtype == torch.bfloat16  # the logits are bf16, the loss theirs upcast (as transformers' own)
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), y.flatten()))


@pytest.mark.parametrize("field", ["final_logit_softcapping", "logit_scale", "logits_scaling", "lm_head_multiplier"])
def test_the_loss_is_not_chunked_where_transformers_scales_the_logits_after_the_projection(field):
    run = new_run(dataclasses.replace(CFG, model="hf:llama-tiny", seq=16), "cpu")
    setattr(run.model.module.config, field, 8.0)  # Granite's logits_scaling, FalconH1's lm_head_multiplier, ...
    with pytest.raises(t.Skip, match="scales its logits after the output projection"):
        t.chunked_cross_entropy(run)


@pytest.mark.parametrize("chunk_logits", ["recompute", "keep"])
def test_the_chunked_loss_is_a_mean_over_the_tokens_scored(chunk_logits):
    torch.manual_seed(0)
    hidden, head = torch.randn(2, 10, 8), torch.nn.Linear(8, 30)
    targets = torch.randint(0, 30, (2, 10))
    targets[0, :4] = loss.IGNORED  # padding: never scored, never counted
    _, whole = loss.cross_entropy(hidden, head, targets)
    _, chunked = loss.cross_entropy(hidden, head, targets, chunks=3, chunk_logits=chunk_logits)
    torch.testing.assert_close(chunked, whole)


def test_the_chunked_loss_is_the_whole_loss_and_its_gradient():
    whole, chunked = bare_run(), bare_run()
    t.chunked_cross_entropy(chunked)
    x, y = _batch()
    logits, loss = whole.model(x, y)
    no_logits, chunked_loss = chunked.model(x, y)
    assert logits is not None and no_logits is None and chunked.record()["loss_chunks"] == 8
    torch.testing.assert_close(chunked_loss, loss)
    loss.backward()
    chunked_loss.backward()
    for a, b in zip(whole.model.parameters(), chunked.model.parameters()):
        torch.testing.assert_close(a.grad, b.grad)


def test_the_chunked_loss_keeping_its_logits_is_the_whole_loss_and_keeps_them_for_backward():
    whole, kept, recomputed = bare_run(), bare_run(), bare_run()
    kept.cfg = dataclasses.replace(kept.cfg, chunk_logits="keep")
    t.chunked_cross_entropy(kept)
    t.chunked_cross_entropy(recomputed)
    x, y = _batch()
    chunk = (x.numel() // 8, whole.model.lm_head.out_features)  # one chunk's logits (or log-probabilities)
    _, loss = whole.model(x, y)
    loss.backward()
    for name, run in (("keep", kept), ("recompute", recomputed)):
        shapes = []
        # what autograd keeps for backward, by shape: the head's transposed weight is not a chunk's logits
        with torch.autograd.graph.saved_tensors_hooks(lambda s, into=shapes: into.append(s.shape) or s, lambda s: s):
            _, chunked_loss = run.model(x, y)
        # eager, each chunk's log-probabilities (saved by log_softmax and by nll_loss): at least one per chunk
        assert (shapes.count(chunk) >= 8 if name == "keep" else chunk not in shapes)
        assert run.record()["chunk_logits"] == name
        torch.testing.assert_close(chunked_loss, loss)
        chunked_loss.backward()
        for a, b in zip(whole.model.parameters(), run.model.parameters()):
            torch.testing.assert_close(a.grad, b.grad)
    assert whole.record()["chunk_logits"] == ""


def test_compiled_by_blocks_a_chunked_loss_compiles_each_chunks_scoring_as_torchtune_does():
    from utils.models.loss import score

    run = bare_run()
    run.cfg = dataclasses.replace(run.cfg, compile_scope="blocks")
    t.chunked_cross_entropy(run)
    t.compile_model(run)  # compiles lazily: nothing runs here
    assert run.model.chunk_score is not score and run.record()["compile_scope"] == "blocks"
    unchunked = bare_run()
    unchunked.cfg = run.cfg
    t.compile_model(unchunked)
    assert unchunked.model.chunk_score is score  # a whole loss stays eager


def test_offloading_keeps_a_weight_and_its_views_and_moves_the_rest():
    from utils.techniques import offload

    linear, x = torch.nn.Linear(4, 3), torch.ones(2, 4)
    pack, unpack = offload.hooks(linear, *offload.save_on_cpu_copies(pin=False))
    kept = pack(linear.weight.t())  # a view of the weight: kept as it is, not a (device, host copy) pair
    assert isinstance(kept, torch.Tensor) and kept._base is linear.weight
    device, host = pack(x)  # an activation: to the host (on a CPU, save_on_cpu's tensor.cpu(): itself)
    assert device == x.device and torch.equal(unpack((device, host)), x)


def test_the_planned_offloading_keeps_the_weight_a_linear_saves_and_makes_a_copy_of_its_input():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        linear, x = torch.nn.Linear(4, 3), torch.ones(2, 4, requires_grad=True)
        with fakes.offloaded_activations(linear):
            y = linear(x)
        # reading a saved tensor unpacks it: the transposed weight is the weight's memory, the input a fresh copy
        weight, given = y.grad_fn._saved_mat2, y.grad_fn._saved_mat1
        assert weight.untyped_storage()._cdata == linear.weight.untyped_storage()._cdata
        assert given.untyped_storage()._cdata != x.untyped_storage()._cdata
        # a view of a wider tensor (a fused qkv's query) comes back at its own size, as the GPU's copy does
        qkv = torch.ones(2, 12, requires_grad=True)
        with fakes.offloaded_activations(linear):
            z = linear(qkv[:, 4:8])
        assert z.grad_fn._saved_mat1.untyped_storage().nbytes() == 2 * 4 * 4
        # a dense tensor in another layout (attention's transposed output) comes back in that layout, as
        # empty_like's host copy brings it: a compiled backward reads it through views traced for its strides
        wide = torch.ones(4, 2, requires_grad=True)
        with fakes.offloaded_activations(linear):
            w = linear(wide.t() * 2)
        assert w.grad_fn._saved_mat1.stride() == (1, 2)


def test_a_compiled_block_plans_with_its_saved_tensors_offloaded():
    # Llama's attention output is saved transposed: back contiguous, its compiled backward's views fail
    cfg = dataclasses.replace(CFG, model="hf:llama-tiny", compile_scope="blocks")
    offloaded, kept = (planner.plan(t.setup_of(name)[1], cfg) for name in ("compile+offload_activations", "compile"))
    assert offloaded.breakdown["activations"] < kept.breakdown["activations"] / 2


def test_offloaded_copies_are_timed_on_the_host_link_after_or_beside_the_kernels():
    from utils import devices
    from utils.plan import timing
    from utils.plan.config import Target

    # a host link slow enough that the copies, not the host's launches, set the phase's time: the targets differ
    gpu = dataclasses.replace(devices.by_key("a100-80gb"), host_link_gbs=0.05)
    streams = {overlap: Target(gpu, offload_streams=overlap) for overlap in (False, True)}
    kept = planner.plan(t.setup_of("flash")[1], CFG, streams[False])
    serial, beside = (planner.plan(t.setup_of("flash+offload_activations")[1], CFG, streams[o]) for o in streams)
    copies = [op for op in serial.ops if op.kind == "host link"]
    to_host, back = ([op.bytes for op in copies if op.phase == phase] for phase in ("forward", "backward"))
    # every saved tensor that left comes back once: as many bytes each way, the activations kept without it
    assert sum(to_host) == sum(back) > 0 and not {op.phase for op in copies} - {"forward", "backward"}
    assert sum(to_host) >= 0.9 * kept.breakdown["activations"] * 2**20
    link_ms = sum(to_host) / (gpu.host_link_gbs * 1e9 * timing.HOST_LINK_EFFICIENCY) * 1e3
    gpu_side = functools.partial(timing.step_time, gpu=gpu, tokens=1, eager_op_us=0.0)  # no host time: the GPU's
    kernels = gpu_side([op for op in serial.ops if op.kind != "host link"]).ms
    for phase in ("forward", "backward"):  # the compute stream waits for the copies; side streams hide them
        assert gpu_side(serial.ops).ms[phase] == pytest.approx(kernels[phase] + link_ms)
        assert gpu_side(serial.ops, copies_overlap=True).ms[phase] == pytest.approx(max(kernels[phase], link_ms))
    for plan, overlap in ((serial, False), (beside, True)):  # each planned as its target says
        assert plan.time.ms == timing.step_time(plan.ops, gpu, plan.time.tokens, copies_overlap=overlap).ms
    assert serial.time.ms["forward"] > beside.time.ms["forward"] >= link_ms
    assert not [op for op in kept.ops if op.kind == "host link"]


def test_offloaded_activations_pass_through_the_saved_tensors_hooks_and_change_nothing():
    plain, _ = _stepped(t.adamw)
    offloaded = bare_run()
    t.strict_fp32(offloaded)
    t.offload_activations(offloaded)
    t.adamw(offloaded)
    packed = []
    real = torch.autograd.graph.save_on_cpu
    offloaded.saved_tensors = lambda: _counting(real(pin_memory=False), packed)
    offloaded.step(offloaded, [_batch()])
    assert packed and offloaded.record()["activation_offload"]
    for a, b in zip(plain.model.parameters(), offloaded.model.parameters()):
        torch.testing.assert_close(a, b)


class _counting:
    def __init__(self, hooks, packed):
        self.hooks, self.packed = hooks, packed

    def __enter__(self):
        pack = self.hooks.pack_hook
        self.hooks.pack_hook = lambda tensor: (self.packed.append(1), pack(tensor))[1]
        return self.hooks.__enter__()

    def __exit__(self, *args):
        return self.hooks.__exit__(*args)


def test_the_step_in_backward_is_adamws_step_and_frees_each_gradient():
    plain, _ = _stepped(t.adamw)
    in_backward, _ = _stepped(t.adamw, t.step_in_backward)
    assert all(p.grad is None for p in in_backward.model.parameters())  # freed as each stepped
    for a, b in zip(plain.model.parameters(), in_backward.model.parameters()):
        torch.testing.assert_close(a, b)
    record = in_backward.record()
    assert record["step_in_backward"] and record["optimizer"] == "torch.optim.AdamW"


def test_the_step_in_backward_refuses_accumulation_before_anything_runs():
    with pytest.raises(checks.BadInput, match="once per backward"):
        registry.combination("step_in_backward+accum")


def test_lora_trains_only_its_adapters_and_the_flops_leave_out_frozen_weight_gradients():
    base = bare_run()
    run, _ = _stepped(t.lora_adapters, t.adamw)
    trainable = {n for n, p in run.model.named_parameters() if p.requires_grad}
    assert trainable and all(adapters.ADAPTER_PREFIX in n for n in trainable)
    assert all(n.rsplit(".lora_", 1)[0].endswith("c_attn") for n in trainable)  # auto: the fused qkv
    record = run.record()
    assert record["adapter"].startswith("lora r=8 alpha=16") and record["trainable_params"] == sum(
        p.numel() for p in run.model.parameters() if p.requires_grad)
    # the frozen projections (the blocks' and the output's, tied to the embedding) lose their weight
    # gradient's 2 FLOPs per weight; the adapters add their own 6
    frozen = {id(m.weight): m.weight.numel() for m in run.model.modules()
              if isinstance(m, torch.nn.Linear) and not m.weight.requires_grad}
    adapted = record["trainable_params"]
    assert run.flops_per_token(16) == base.flops_per_token(16) + 6 * adapted - 2 * sum(frozen.values())
    stepped = {name.replace(".base_layer", ""): p for name, p in run.model.named_parameters()}
    for name, p in base.model.named_parameters():
        torch.testing.assert_close(p, stepped[name])  # the frozen weights did not move


@pytest.mark.parametrize("given, found", [("auto", ("q_proj", "v_proj")), ("q_proj,o_proj", ("q_proj", "o_proj"))])
def test_lora_targets_auto_and_by_name(given, found):
    names = ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj", "model.layers.0.self_attn.o_proj"]
    assert adapters.targets(given, names, "hf:x") == found


def test_lora_targets_naming_nothing_is_bad_input():
    with pytest.raises(checks.BadInput, match=r"has no module LoRA adapts \(a Linear, .*\) or MoE expert weight "
                       "named 'w_q'"):
        adapters.targets("w_q", ["blocks.0.attn.c_attn"], "tiny")


def test_the_plan_counts_frozen_weights_offloaded_activations_and_paged_state_as_the_gpu_would(monkeypatch):
    baseline, lora, offloaded, adam8 = (planner.plan(load_setup(n), CFG) for n in
                                        ("baseline", "lora", "offload_activations", "8bit"))
    assert lora.breakdown["optimizer"] < baseline.breakdown["optimizer"] / 20  # no state for frozen weights
    assert offloaded.breakdown["activations"] < baseline.breakdown["activations"] / 3  # on the host till backward
    monkeypatch.setattr(fakes, "PAGED_MIN_NUMEL", 1000)  # the tiny model's matrices paged too
    paged = planner.plan(load_setup("paged_8bit"), CFG)
    assert paged.unified_bytes > 0 and paged.peak_bytes < adam8.peak_bytes - paged.unified_bytes / 2
    bf16 = planner.plan(load_setup("pure_bf16"), dataclasses.replace(CFG))
    assert bf16.breakdown["params"] == pytest.approx(baseline.breakdown["params"] / 2, abs=0.1)  # MiB, to 0.1


def test_qlora_stores_the_frozen_projections_in_nf4_and_trains_its_adapters():
    run, loss = _stepped(t.bf16_weights, t.lora_adapters, t.nf4_base, t.adamw)
    projections = [m for m in run.model.blocks.modules()
                   if isinstance(m, torch.nn.Linear) and not m.weight.requires_grad]
    assert projections and all(type(m.weight.data).__name__ == "NF4Tensor" for m in projections)
    assert "NF4 base: 8 of 8 frozen projections, block 64" in run.record()["adapter"] and torch.isfinite(loss)
    # 4 bits per weight, an 8-bit scaler per 64 and a bf16 factor per 256 scalers, fewer in a small weight
    # (the tiny model's 768 scalers: per 32, so that up to 8 FSDP2 ranks each take whole blocks): 0.516 bytes
    # a weight, and NF4's table of 16 levels
    weight = projections[0].weight
    stored = sum(st.nbytes() for st in get_untyped_storages(weight))
    assert weight.numel() // 64 == 768 and "8 small ones per fewer" in run.record()["adapter"]
    assert stored == pytest.approx(weight.numel() * (0.5 + 1 / 64 + 2 / 64 / 32) + 16 * 2, abs=8)
    planned = {n: planner.plan(setup_of(n)[1], CFG).breakdown["params"] for n in ("pure_bf16+lora", "qlora")}
    assert planned["qlora"] < planned["pure_bf16+lora"]  # planned on fake tensors as it ran


def test_qlora_keeps_a_projection_that_multiplies_its_weight_itself_and_says_why(tmp_path):
    from utils.measure.train import Skip, build_run

    # Falcon's FalconLinear (an nn.Linear) computes input @ weight.T itself: NF4 runs through F.linear only
    falcon = tmp_path / "falcon-tiny.json"
    falcon.write_text(json.dumps({
        "architectures": ["FalconForCausalLM"], "model_type": "falcon", "hidden_size": 64, "num_attention_heads": 4,
        "num_hidden_layers": 2, "vocab_size": 256, "new_decoder_architecture": False, "multi_query": True,
        "parallel_attn": True, "bias": False, "alibi": False, "hidden_dropout": 0.0, "attention_dropout": 0.0}))
    cfg = dataclasses.replace(CFG, technique="qlora", model=f"hf:{falcon}", seq=32)
    with pytest.raises(Skip, match=r"can be stored in NF4: 8 projections of FalconLinear, whose own forward "
                                   r"multiplies the weight \(NF4 runs through F.linear\)"):
        build_run(cfg, setup_of("qlora")[1])


def test_the_report_says_what_trained_and_how_the_memory_was_saved():
    from utils.report.tables import what_ran

    row = {"status": "ok", "dtype": "bf16-weights", "attention": "sdpa:flash", "optimizer": "torch.optim.AdamW",
           "loss_chunks": 8, "activation_offload": True, "step_in_backward": "True", "accum": 1,
           "adapter": "lora r=8 alpha=16 dropout=0 on q_proj,v_proj", "trainable_params": 3584.0}
    said = what_ran(row)
    assert said.startswith("bf16-weights, sdpa:flash, torch.optim.AdamW") and "loss in 8 chunks" in said
    assert "activations on the host" in said and "optimizer step in backward" in said
    assert said.endswith("on q_proj,v_proj, 3,584 parameters trained")
    compiled = {**row, "compiled": True, "compile_mode": "default", "compile_scope": "blocks_in_checkpoint"}
    assert "compiled (by blocks in checkpoint)" in what_ran(compiled)
