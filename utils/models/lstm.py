"""An LSTM language model (the LSTM-vs-GPT grid's other architecture) behind the same Costed interface
as the GPT, so every technique script trains it unchanged.

Embedding -> LAYERS single-layer nn.LSTMs (each one "block", the unit checkpointing wraps)
-> linear head tied to the embedding, as in Press & Wolf 2017 and the classic word-level
LSTM language models (Zaremba et al. 2014). Its width and vocabulary follow a GPT preset, so
`lstm` is sized like `tiny`. It has no attention: set_attention raises ValueError (so the
attention techniques skip with the reason) and attention_probe returns None.
"""

import torch.nn as nn

from utils.models.costed import Costed


class LSTMBlock(nn.Module):
    def __init__(self, n_embd):
        super().__init__()
        self.lstm = nn.LSTM(n_embd, n_embd, batch_first=True)

    def forward(self, x):
        out, _ = self.lstm(x)  # (B, T, C); each sequence starts from a zero state
        return out


class LSTM(Costed):
    def __init__(self, n_layer, n_embd, vocab_size):
        super().__init__()
        self.n_layer, self.n_embd = n_layer, n_embd
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.blocks = nn.ModuleList(LSTMBlock(n_embd) for _ in range(n_layer))
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        nn.init.normal_(self.wte.weight, mean=0.0, std=0.02)
        self.wte.weight = self.lm_head.weight  # weight tying

    def flops_per_token(self, seq):
        # every weight matrix is used once per token in a matmul: 2 FLOPs per weight forward,
        # 4 backward (input and weight gradients), so 6N as for the GPT; the gates' elementwise
        # work is not counted, nor are the biases (8d per layer), which do no matmul. No term
        # in seq: a recurrence costs the same per token however long the sequence is.
        biases = sum(p.numel() for name, p in self.named_parameters() if "bias" in name)
        return 6 * (self.num_params() - biases)

    def least_bytes(self, batch, seq):
        # the logits are materialised whole (2 bytes an element at the narrowest)
        return {**super().least_bytes(batch, seq), "logits": 2 * batch * seq * self.lm_head.out_features}

    def forward(self, idx, targets):
        x = self.wte(idx)  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        return self.loss(x, self.lm_head, targets)  # logits (B, T, vocab)
