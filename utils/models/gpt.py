"""A nanoGPT-style GPT with pluggable attention and MLP, which knows its own cost.

The model is the same for every technique; techniques flip its switches (`set_attention`),
choose its MLP (`mlp=`), wrap its blocks (checkpointing) or wrap it whole (autocast,
compile). Generic code asks it only what the `Costed` interface answers.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.models.costed import Costed


@dataclass(frozen=True)
class GPTConfig:
    n_layer: int
    n_head: int
    n_embd: int
    vocab_size: int
    block_size: int
    mlp: str = "gelu"  # gelu, swiglu or geglu (see MLP_CLASSES)


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


MLP_CLASSES = {"gelu": MLP, "swiglu": GatedMLP, "geglu": GatedMLP}


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP_CLASSES[config.mlp](config)

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
        if self.lm_head.weight.is_meta:  # shapes only (a preflight, a plan): no values, and meta's normal_ is slow
            return
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

    @property
    def mlp_name(self):
        return self.config.mlp

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

    def least_bytes(self, batch, seq):
        # the logits are materialised whole, and manual attention's (B, nh, T, T) scores for at
        # least one layer; 2 bytes an element, the narrowest any technique computes them in
        least = {**super().least_bytes(batch, seq), "logits": 2 * batch * seq * self.config.vocab_size}
        if self.attention == "manual":
            least["one layer's T x T attention scores"] = 2 * batch * self.config.n_head * seq * seq
        return least

    def forward(self, idx, targets):
        B, T = idx.size()
        pos = torch.arange(T, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        return self.loss(self.ln_f(x), self.lm_head, targets)  # logits (B, T, vocab)
