"""The interface every model answers: what generic code (the loop, the techniques, the
planner) may ask a model, so that any model plugs in by answering the same questions."""

import torch.nn as nn

from utils.models.loss import cross_entropy, score


class Costed(nn.Module):
    """What generic code may ask a model (nanoGPT's get_num_params / estimate_mfu, widened).

    Subclasses set `self.blocks` (an nn.ModuleList: the unit activation checkpointing wraps
    and FSDP2 shards) and implement `flops_per_token` and `attention_probe`.
    """

    attention = "none"  # the attention implementation in use, where the model has one
    flops_source = "formula"  # how flops_per_token was had: formula, or measured (FlopCounterMode)
    mlp_name = "gelu"  # the blocks' MLP, in results.csv's terms (a foreign model's: own)
    loss_chunks = 1  # the loss's cross-entropy in this many chunks of tokens (utils/models/loss.py)
    chunk_logits = "recompute"  # how backward has each chunk's logits: recompute or keep (utils/models/loss.py)
    chunk_score = staticmethod(score)  # each chunk's upcast and cross-entropy (compiled by compile_model by blocks)

    def loss(self, hidden, head, targets):
        """(logits or None, mean loss) of the output projection `head` over `hidden`, chunked as the
        techniques set it."""
        return cross_entropy(hidden, head, targets, self.loss_chunks, self.chunk_logits, self.chunk_score)

    def chunks_unsupported(self):
        """Why the loss cannot be computed in chunks here, or None (the suite's models: it can)."""
        return None

    def host_synced(self):
        """Why a training step of this model syncs the host on this GPU (CUDA graphs cannot capture
        it), or None (the suite's models: it does not)."""
        return None

    def num_params(self):
        return sum(p.numel() for p in self.parameters())  # tied weights counted once

    def flops_per_token(self, seq):
        """Model FLOPs of forward + backward per token at sequence length `seq`."""
        raise NotImplementedError

    def least_bytes(self, batch, seq):
        """What any training step of this model must hold at once, whatever the technique: a
        lower bound, in bytes, by part ({part: bytes}). Here: fp32 weights and gradients (every
        technique keeps both); subclasses add what their forward cannot avoid."""
        return {"weights and gradients": 8 * self.num_params()}

    @property
    def blocks_text(self):
        """Where the blocks are and how many, as the row says it: "blocks (12)"."""
        return f"blocks ({len(self.blocks)})"

    def attention_probe(self, batch, seq, device):
        """A zero-argument callable that runs one attention call at the training shape
        (for the kernel probe), or None if the model has no attention."""
        return None

    def set_attention(self, kind):
        raise ValueError(f"{type(self).__name__} has no attention to switch to {kind!r}")
