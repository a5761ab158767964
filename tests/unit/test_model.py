"""The model's switches change how it computes, never what it computes."""

import pytest
import torch
from helpers import run_config
from torch.utils.flop_counter import FlopCounterMode

from utils import techniques as t
from utils.models import build_model
from utils.models.gpt import gated_hidden


def _loss_and_grads(model, idx):
    _, loss = model(idx, idx)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def test_sdpa_attention_matches_manual():
    torch.manual_seed(0)
    model = build_model("tiny", 32)
    idx = torch.randint(0, 256, (2, 32))
    manual_logits, _ = model(idx, idx)
    model.set_attention("sdpa")
    sdpa_logits, _ = model(idx, idx)
    torch.testing.assert_close(sdpa_logits, manual_logits, rtol=1e-4, atol=1e-5)


def test_checkpointing_gives_the_same_loss_and_gradients():
    run = _run()
    idx = torch.randint(0, 256, (2, 16))
    loss, grads = _loss_and_grads(run.model, idx)
    run.model.zero_grad()
    t.checkpoint_blocks(run)
    assert run.checkpointing and all(type(b).__name__ == "CheckpointWrapper" for b in run.model.blocks)
    loss_ckpt, grads_ckpt = _loss_and_grads(run.model, idx)
    assert loss_ckpt == loss
    for g, g_ckpt in zip(grads, grads_ckpt):
        torch.testing.assert_close(g_ckpt, g)


def test_causal_attention_ignores_the_future():
    torch.manual_seed(0)
    model = build_model("tiny", 16)
    idx = torch.randint(0, 256, (1, 16))
    changed = idx.clone()
    changed[0, -1] = (idx[0, -1] + 1) % 256
    for kind in ("manual", "sdpa"):
        model.set_attention(kind)
        a, _ = model(idx, idx)
        b, _ = model(changed, changed)
        torch.testing.assert_close(a[0, :-1], b[0, :-1])


def _run():
    cfg = run_config("test", steps=1, warmup=0, model="tiny", batch=2, seq=16, device="cpu", data="coinflip", seed=0,
                     lr=1e-3)
    return t.Run(cfg, build_model("tiny", 16))


def test_techniques_refuse_the_wrong_order():
    run = _run()
    t.adamw(run)
    with pytest.raises(ValueError, match="order"):
        t.autocast_bf16(run)


def test_lion_scales_lr_and_weight_decay_as_stated():
    run = _run()
    t.lion(run, lr_scale=1 / 3, weight_decay_scale=3)
    assert run.lr == pytest.approx(1e-3 / 3)
    assert sorted(g["weight_decay"] for g in run.optimizer.param_groups) == pytest.approx([0.0, 0.3])


@pytest.mark.parametrize("mlp", ["gelu", "swiglu", "geglu"])
@pytest.mark.parametrize("preset, seq", [("tiny", 64), ("small", 128)])
def test_flops_per_token_match_the_flop_counter(mlp, preset, seq):
    # FlopCounterMode counts the matmuls of a real forward + backward; the model's own count
    # (6N + 12*L*d*T) also holds its bias and layernorm parameters, which do no matmul: < 1%
    torch.manual_seed(0)
    model = build_model(preset, seq, mlp=mlp)  # manual attention: the counter sees its matmuls
    idx = torch.randint(0, 256, (2, seq))
    with FlopCounterMode(display=False) as counter:
        _, loss = model(idx, idx)
        loss.backward()
    assert counter.get_total_flops() / idx.numel() == pytest.approx(model.flops_per_token(seq), rel=0.01)


def test_gpt2_costs_what_palm_says():
    with torch.device("meta"):  # shapes only: no memory for 124M parameters
        model = build_model("gpt2", 1024)
    assert model.num_params() - 1024 * 768 == 123_689_472
    assert model.flops_per_token(1024) / 1e9 == pytest.approx(0.8554, abs=1e-4)  # 6N + 12·L·d·T, PaLM's appendix B


@pytest.mark.parametrize("n_embd, hidden", [(128, 320), (384, 1024), (768, 2048), (1600, 4288)])
def test_gated_mlps_keep_the_gelu_mlps_weights(n_embd, hidden):
    assert gated_hidden(n_embd) == hidden and hidden % 64 == 0
    # three d x h matrices against two d x 4d: equal where 8d/3 is a multiple of 64, else
    # as close as a multiple of 64 gets
    assert abs(3 * n_embd * hidden - 8 * n_embd**2) <= 3 * n_embd * 32


def test_techniques_ask_the_model_not_its_layers():
    run = _run()
    probe = run.model.attention_probe(2, 16, "cpu")
    assert probe().shape == (2, 4, 16, 32)  # (B, nh, T, hs)
    t.checkpoint_blocks(run)  # wrapped blocks: switching attention still reaches every block
    run.model.set_attention("sdpa")
    assert run.model.attention == "sdpa"
