"""The models' loss: cross-entropy of the output projection, whole or in chunks.

Whole, the (B*T, vocab) logits exist at once, and for backward the softmax's output with them
(GPT-2 at B=16, T=1024: 3.1 GiB of fp32 logits, 4.8 at the peak). In chunks of tokens, each
chunk's logits are upcast to fp32 and scored on their own, in one of two ways (CHUNK_LOGITS):
- recompute (the suite's): each chunk is projected and scored under activation checkpointing
  (torch.utils.checkpoint): forward keeps only the chunk's hidden states, backward recomputes one
  chunk's logits at a time, so at most one chunk's logits exist, in any dtype, at the price of
  the projection's forward run twice;
- keep (torchtune's CEWithChunkedOutputLoss): the projection's output made chunk by chunk, every
  chunk's logits held until the loss is made and what scoring saves kept for backward, the upcast
  one chunk at a time; the projection runs once. Eager, the scoring saves each chunk's fp32
  log-probabilities (the whole logits in fp32, twice the bf16 logits); compiled, what inductor's
  partition saves (torchtune's case: the chunk's bf16 logits).
`score` is each chunk's upcast and cross-entropy: what torchtune's compile_loss compiles
(compile_model under COMPILE_SCOPE=blocks passes it compiled).
"""

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

IGNORED = -100  # F.cross_entropy's ignore_index: a target never scored


def score(logits, targets):
    """The chunk's cross-entropy summed, in fp32 (torchtune upcasts each chunk too): the caller
    divides once."""
    return F.cross_entropy(logits.float(), targets, reduction="sum")


def in_fp32(logits):
    """The logits as cross-entropy scores them: in fp32. Under autocast its log_softmax is cast to fp32 already, and
    an upcast here would hold one more bf16 copy of the logits at the peak; bf16 weights' logits (no autocast) are
    upcast, as transformers' ForCausalLMLoss and torchtune's output projection do."""
    return logits if torch.is_autocast_enabled(logits.device.type) else logits.float()


def _recomputed(hidden, targets, head, scorer):
    return scorer(head(hidden), targets)


def cross_entropy(hidden, head, targets, chunks=1, chunk_logits="recompute", scorer=score):
    """(logits or None, mean loss) of `head` over `hidden` (B, T, C) against `targets` (B, T):
    whole (chunks=1: the logits returned), or in `chunks` chunks whose logits are recomputed in
    backward or kept (`chunk_logits`; None returned), each scored by `scorer`."""
    if chunks <= 1:
        whole = head(hidden)
        return whole, F.cross_entropy(in_fp32(whole).view(-1, whole.size(-1)), targets.reshape(-1))
    flat, flat_targets = hidden.reshape(-1, hidden.size(-1)), targets.reshape(-1)
    pieces = list(zip(flat.chunk(chunks), flat_targets.chunk(chunks)))
    if chunk_logits == "keep":
        # every chunk projected first, as torchtune's model returns them (a list), then scored
        projected = [head(h) for h, _ in pieces]
        total = sum(scorer(chunk, t) for chunk, (_, t) in zip(projected, pieces))
    else:
        total = sum(checkpoint(_recomputed, h, t, head, scorer, use_reentrant=False) for h, t in pieces)
    return None, total / (flat_targets != IGNORED).sum()  # a mean over the tokens scored, as F.cross_entropy's
