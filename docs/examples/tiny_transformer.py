"""A model from a file, as MODEL=docs/examples/tiny_transformer.py:build trains it.

build(seq) returns an nn.Module whose forward(idx, targets) returns (logits, loss); the suite
wraps it (parameters counted, FLOPs measured, blocks found: its nn.ModuleList `layers`). It
has no attention switch the suite can flip (it is not a transformers model), so the attention
techniques skip saying so, and a gated MLP is the suite's change to its own GPT: skipped too.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB, WIDTH, HEADS, DEPTH = 256, 64, 4, 2


class TinyTransformer(nn.Module):
    def __init__(self, seq):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.position = nn.Embedding(seq, WIDTH)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(WIDTH, HEADS, 4 * WIDTH, dropout=0.0, batch_first=True, norm_first=True)
            for _ in range(DEPTH)
        )
        self.norm = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, VOCAB, bias=False)

    def forward(self, idx, targets):
        T = idx.size(1)
        x = self.embed(idx) + self.position(torch.arange(T, device=idx.device))
        causal = nn.Transformer.generate_square_subsequent_mask(T, device=idx.device)
        for layer in self.layers:
            x = layer(x, src_mask=causal, is_causal=True)
        logits = self.head(self.norm(x))
        return logits, F.cross_entropy(logits.view(-1, VOCAB), targets.reshape(-1))


def build(seq):
    return TinyTransformer(seq)
