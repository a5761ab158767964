"""The LSTM answers the Costed interface as the GPT does: its own parameters and FLOPs,
blocks that checkpointing wraps, no attention (so attention techniques skip); LAYERS sets
either model's depth."""

import pytest
import torch
from helpers import run_config
from torch.utils.flop_counter import FlopCounterMode

from utils import models
from utils import techniques as t


def _run(preset="lstm", layers=None):
    cfg = run_config("test", steps=1, warmup=0, model=preset, batch=2, seq=16, device="cpu", data="coinflip", seed=0,
                     lr=1e-3, layers=layers)

    def build(mlp="gelu"):
        torch.manual_seed(0)
        return models.build_model(preset, 16, mlp=mlp, layers=layers)

    return t.Run(cfg, build(), build=build)


@pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")  # torch's note on leaving the flags
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("seq", [16, 64])
def test_flops_per_token_match_the_flop_counter(layers, seq):
    torch.manual_seed(0)
    model = models.build_model("lstm", seq, layers=layers)
    idx = torch.randint(0, 256, (2, seq))
    # oneDNN runs the LSTM as one fused op the counter cannot see into; without it pytorch's
    # own LSTM cell does its matmuls one by one, and the counter counts them
    with torch.backends.mkldnn.flags(enabled=False), FlopCounterMode(display=False) as counter:
        _, loss = model(idx, idx)
        loss.backward()
    # within 1%: the first step's recurrent matmul multiplies a zero state, which the counter
    # still counts, and the gradient of the first hidden state is not needed
    assert counter.get_total_flops() / idx.numel() == pytest.approx(model.flops_per_token(seq), rel=0.01)


def test_parameters_are_the_embedding_and_four_gates_per_layer():
    d, vocab = 128, 256  # sized like tiny
    for layers in (1, 2, 4):
        model = models.build_model("lstm", 16, layers=layers)
        assert model.num_params() == vocab * d + layers * (4 * d * (d + d) + 8 * d)  # tied head counted once
        assert len(model.blocks) == layers


def test_layers_sets_the_gpt_depth_too():
    assert len(models.build_model("tiny", 16, layers=4).blocks) == 4
    assert len(models.build_model("tiny", 16).blocks) == models.default_layers("tiny") == 2
    assert models.arch("lstm") == "lstm" and models.arch("tiny") == "gpt"


def test_attention_and_mlp_techniques_skip_with_the_reason():
    run = _run()
    assert run.model.attention_probe(2, 16, "cpu") is None
    with pytest.raises(t.Skip, match="LSTM has no attention"):
        t.flash_attention(run)
    with pytest.raises(t.Skip, match="no MLP"):
        t.gated_mlp(_run(), "swiglu")


def test_bf16_skips_an_lstm_where_this_cpu_has_no_bf16_kernel_for_it(monkeypatch):
    def no_kernel(self, *args):  # what an AVX2-only CPU's oneDNN answers for a bf16 LSTM
        raise RuntimeError("could not create a primitive descriptor for the LSTM forward propagation primitive")

    monkeypatch.setattr(torch.nn.LSTM, "forward", no_kernel)
    with pytest.raises(t.Skip, match="this CPU cannot run an LSTM under bf16 autocast .could not create a primitive"):
        t.autocast_bf16(_run())
    gpt = _run("tiny")
    t.autocast_bf16(gpt)  # no recurrence: nothing to try
    assert gpt.autocast_dtype == torch.bfloat16


def test_checkpointing_wraps_the_lstm_blocks_and_keeps_the_math():
    run = _run(layers=2)
    idx = torch.randint(0, 256, (2, 16))
    _, loss = run.model(idx, idx)
    loss.backward()
    grads = [p.grad.clone() for p in run.model.parameters()]
    run.model.zero_grad()
    t.checkpoint_blocks(run)
    assert all(type(b).__name__ == "CheckpointWrapper" for b in run.model.blocks)
    _, loss_ckpt = run.model(idx, idx)
    loss_ckpt.backward()
    assert loss_ckpt == loss
    for g, p in zip(grads, run.model.parameters()):
        torch.testing.assert_close(p.grad, g)
