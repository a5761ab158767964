"""A nanoGPT-style GPT with pluggable attention and MLP, which knows its own cost.

The model is the same for every technique; techniques flip its switches (`set_attention`),
choose its MLP (`mlp=`), wrap its blocks (checkpointing) or wrap it whole (autocast,
compile). Generic code (the loop, train.py, the techniques) asks a model only what the
`Costed` interface below answers, never reaches into its layers, so another model (an LSTM)
plugs in by answering the same questions.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class GPTConfig:
    n_layer: int
    n_head: int
    n_embd: int
    vocab_size: int
    block_size: int
    mlp: str = "gelu"  # gelu, swiglu or geglu (see MLPS)


# presets: name -> (architecture, default batch, default seq). gpt2* follow nanoGPT
# (vocab padded 50257 -> 50304 so the lm_head matmul tiles evenly).
PRESETS = {
    "tiny": (dict(n_layer=2, n_head=4, n_embd=128, vocab_size=256), 4, 128),
    "small": (dict(n_layer=6, n_head=6, n_embd=384, vocab_size=256), 16, 256),
    "gpt2": (dict(n_layer=12, n_head=12, n_embd=768, vocab_size=50304), 16, 1024),
    "gpt2-medium": (dict(n_layer=24, n_head=16, n_embd=1024, vocab_size=50304), 8, 1024),
    "gpt2-large": (dict(n_layer=36, n_head=20, n_embd=1280, vocab_size=50304), 4, 1024),
    "gpt2-xl": (dict(n_layer=48, n_head=25, n_embd=1600, vocab_size=50304), 4, 256),
    # seed 001's second model: Cerebras-GPT-2.7B's shape (context 2048), GPT-2's padded vocab
    "gpt-2.7b": (dict(n_layer=32, n_head=32, n_embd=2560, vocab_size=50304), 4, 2048),
}


class Costed(nn.Module):
    """What generic code may ask a model (nanoGPT's get_num_params / estimate_mfu, widened).

    Subclasses set `self.blocks` (an nn.ModuleList: the unit activation checkpointing wraps)
    and implement `flops_per_token` and `attention_probe`.
    """

    attention = "none"  # the attention implementation in use, where the model has one

    def num_params(self):
        return sum(p.numel() for p in self.parameters())  # tied weights counted once

    def flops_per_token(self, seq):
        """Model FLOPs of forward + backward per token at sequence length `seq`."""
        raise NotImplementedError

    def attention_probe(self, batch, seq, device):
        """A zero-argument callable that runs one attention call at the training shape
        (for the kernel probe), or None if the model has no attention."""
        return None

    def set_attention(self, kind):
        raise ValueError(f"{type(self).__name__} has no attention to switch to {kind!r}")


def manual_attention(q, k, v):
    # the textbook form: materialises the full (B, nh, T, T) score matrix
    T = q.size(-2)
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.size(-1)))  # (B, nh, T, T)
    causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    scores = scores.masked_fill(~causal, float("-inf"))
    return F.softmax(scores, dim=-1) @ v  # (B, nh, T, hs)


def sdpa_attention(q, k, v):
    # pytorch picks a fused kernel (flash / efficient / cudnn / math) per call
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def flash_attn_attention(q, k, v):
    from flash_attn import flash_attn_func  # the Dao-AILab package, CUDA + fp16/bf16 only

    # flash_attn wants (B, T, nh, hs)
    out = flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), causal=True)
    return out.transpose(1, 2)


ATTENTION = {"manual": manual_attention, "sdpa": sdpa_attention, "flash_attn": flash_attn_attention}


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.attention = "manual"

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        # (B, T, C) -> (B, nh, T, hs)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = ATTENTION[self.attention](q, k, v)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


def gated_hidden(n_embd, multiple=64):
    """Hidden width of a gated MLP with the GELU MLP's parameter count: three matrices of
    d x h instead of two of d x 4d gives h = 2/3 * 4d, rounded to the nearest multiple of 64
    (so matmuls tile evenly; the count then differs by at most 32 * 3d)."""
    return max(multiple, round(2 * 4 * n_embd / 3 / multiple) * multiple)


class GatedMLP(nn.Module):
    """GLU-variant MLP (Shazeer 2020): c_proj(act(gate(x)) * up(x)); swiglu uses SiLU, geglu GELU."""

    def __init__(self, config):
        super().__init__()
        hidden = gated_hidden(config.n_embd)
        self.act = F.silu if config.mlp == "swiglu" else F.gelu
        self.c_gate = nn.Linear(config.n_embd, hidden)
        self.c_fc = nn.Linear(config.n_embd, hidden)
        self.c_proj = nn.Linear(hidden, config.n_embd)

    def forward(self, x):
        return self.c_proj(self.act(self.c_gate(x)) * self.c_fc(x))


MLPS = {"gelu": MLP, "swiglu": GatedMLP, "geglu": GatedMLP}


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLPS[config.mlp](config)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(Costed):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.wte.weight = self.lm_head.weight  # weight tying, as in GPT-2
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # scaled residual init (GPT-2 paper)
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def _attentions(self):
        # modules(), not blocks[i].attn: blocks may be wrapped (checkpointing)
        return [m for m in self.modules() if isinstance(m, CausalSelfAttention)]

    def set_attention(self, kind):
        for attn in self._attentions():
            attn.attention = kind

    @property
    def attention(self):
        return self._attentions()[0].attention

    def attention_probe(self, batch, seq, device):
        # q, k, v at the training shape: the kernel SDPA picks depends on shapes, dtype and
        # device, not on weights (so the probe also works on a sharded model)
        c = self.config
        q, k, v = (torch.randn(batch, c.n_head, seq, c.n_embd // c.n_head, device=device) for _ in range(3))
        return lambda: ATTENTION[self.attention](q, k, v)  # (B, nh, T, hs)

    def flops_per_token(self, seq):
        # PaLM appendix B: 6N for the weight matmuls of forward and backward (N without the
        # position embedding, as nanoGPT counts it) + 12 * L * d * T for attention's
        # score and value products. Model FLOPs: checkpointing's recompute is not counted.
        n = self.num_params() - self.wpe.weight.numel()
        return 6 * n + 12 * self.config.n_layer * self.config.n_embd * seq

    def forward(self, idx, targets):
        B, T = idx.size()
        pos = torch.arange(T, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))  # (B, T, vocab)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss


def build_model(preset, seq, mlp="gelu", layers=None):
    arch, _, _ = PRESETS[preset]
    if mlp not in MLPS:
        raise ValueError(f"unknown mlp {mlp!r}; one of {', '.join(MLPS)}")
    if layers is not None:  # LAYERS=: seed 004's depth sweep on a preset's width
        arch = {**arch, "n_layer": layers}
    return GPT(GPTConfig(block_size=seq, mlp=mlp, **arch))
