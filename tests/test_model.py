"""The model's switches change how it computes, never what it computes."""

import pytest
import torch

from utils import techniques as t
from utils.config import RunConfig
from utils.model import build_model


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
    torch.manual_seed(0)
    model = build_model("tiny", 32)
    idx = torch.randint(0, 256, (2, 32))
    loss, grads = _loss_and_grads(model, idx)
    model.zero_grad()
    model.checkpoint_blocks = True
    loss_ckpt, grads_ckpt = _loss_and_grads(model, idx)
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
    cfg = RunConfig("test", 1, 0, "tiny", 2, 16, "cpu", "coinflip", 0, 1e-3, "unused.csv")
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
