"""Batches of (inputs, targets), each (B, T) int64, made on the training device.

Two sources:
- coin flips (seed 000): every token is 1 with probability 2/3, else 0, drawn fresh per
  batch on the device, so no host->device copy sits in the step. The best possible loss is
  the entropy of the coin, COIN_FLIP_ENTROPY nats, which makes convergence easy to read.
- a text file at byte level (vocab 256): random windows of the file's bytes.
"""
import math
from pathlib import Path

import torch

P_ONE = 2 / 3
COIN_FLIP_ENTROPY = -(P_ONE * math.log(P_ONE) + (1 - P_ONE) * math.log(1 - P_ONE))  # ~0.6365


def coin_flips(batch, seq, device, seed):
    gen = torch.Generator(device=device).manual_seed(seed)
    probs = torch.full((batch, seq + 1), P_ONE, device=device)
    while True:
        flips = torch.bernoulli(probs, generator=gen).long()  # (B, T+1)
        yield flips[:, :-1], flips[:, 1:]


def min_text_bytes(seq):
    """A text file must hold one window of seq + 1 bytes, at a random start (randint needs >= 1)."""
    return seq + 2


def text_bytes(path, batch, seq, device, seed):
    data = torch.frombuffer(bytearray(Path(path).read_bytes()), dtype=torch.uint8).to(device)
    if data.numel() < min_text_bytes(seq):
        raise ValueError(f"DATA={path} has {data.numel()} bytes; SEQ={seq} needs at least {min_text_bytes(seq)}")
    gen = torch.Generator(device=device).manual_seed(seed)
    offsets = torch.arange(seq + 1, device=device)
    while True:
        starts = torch.randint(data.numel() - seq - 1, (batch, 1), device=device, generator=gen)
        window = data[starts + offsets].long()  # (B, T+1)
        yield window[:, :-1], window[:, 1:]


def batches(cfg):
    if cfg.data == "coinflip":
        return coin_flips(cfg.batch, cfg.seq, cfg.device, cfg.seed)
    return text_bytes(cfg.data, cfg.batch, cfg.seq, cfg.device, cfg.seed)
