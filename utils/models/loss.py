"""The models' loss: cross-entropy of the output projection, whole or in chunks.

Whole, the (B*T, vocab) logits exist at once, and for backward the softmax's output with them
(GPT-2 at B=16, T=1024: 3.1 GiB of fp32 logits, 4.8 at the peak). In chunks, each chunk of
tokens is projected and scored under activation checkpointing (torch.utils.checkpoint): forward
keeps only the chunk's hidden states, backward recomputes one chunk's logits at a time, so at
most one chunk's logits exist, at the price of the projection's forward run twice. torchtune's
CEWithChunkedOutputLoss chunks the projection's output without recomputing it (each chunk
upcast to fp32 on its own); this one never holds the whole logits, in any dtype.
"""

import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def _chunk_loss(hidden, targets, head):
    # the sum, in fp32 (torchtune upcasts each chunk's logits too): the caller divides once
    return F.cross_entropy(head(hidden).float(), targets, reduction="sum")


def cross_entropy(hidden, head, targets, chunks=1):
    """(logits or None, mean loss) of `head` over `hidden` (B, T, C) against `targets` (B, T):
    whole (chunks=1: the logits returned), or in `chunks` checkpointed chunks (None)."""
    if chunks <= 1:
        logits = head(hidden)
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))
    flat, flat_targets = hidden.reshape(-1, hidden.size(-1)), targets.reshape(-1)
    total = sum(checkpoint(_chunk_loss, h, t, head, use_reentrant=False)
                for h, t in zip(flat.chunk(chunks), flat_targets.chunk(chunks)))
    return None, total / flat_targets.numel()
