"""Batches of (inputs, targets), each (B, T) int64, made on the training device.

Sources (DATA=):
- coinflip (seed 000): every token is 1 with probability 2/3, else 0, drawn fresh per batch
  on the device, so no host->device copy sits in the step. The best possible loss is the
  entropy of the coin, COIN_FLIP_ENTROPY nats, which makes convergence easy to read.
- fixed: one coin-flip batch drawn once and reused every step (nanoGPT bench's
  real_data=False), which takes data generation out of the loop entirely; the loss then
  measures memorisation, not learning.
- a text file at byte level (vocab 256): random windows of the file's bytes.
"""

import math
from pathlib import Path

import torch

P_ONE = 2 / 3
COIN_FLIP_ENTROPY = -(P_ONE * math.log(P_ONE) + (1 - P_ONE) * math.log(1 - P_ONE))  # ~0.6365
SOURCES = ("coinflip", "fixed")  # besides a path to a text file


def coin_flips(batch, seq, device, seed):
    gen = torch.Generator(device=device).manual_seed(seed)
    probs = torch.full((batch, seq + 1), P_ONE, device=device)
    while True:
        flips = torch.bernoulli(probs, generator=gen).long()  # (B, T+1)
        yield flips[:, :-1], flips[:, 1:]


def fixed(batch, seq, device, seed):
    x, y = next(coin_flips(batch, seq, device, seed))
    while True:
        yield x, y


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


def _source(cfg, batch):
    if cfg.data == "coinflip":
        return coin_flips(batch, cfg.seq, cfg.device, cfg.seed)
    if cfg.data == "fixed":
        return fixed(batch, cfg.seq, cfg.device, cfg.seed)
    return text_bytes(cfg.data, batch, cfg.seq, cfg.device, cfg.seed)


def batches(cfg):
    """This process's batches. Under DDP/FSDP every rank draws the same global batch of
    world x BATCH sequences and keeps its slice: the sequences a single process at BATCH x
    world would see, so the two runs' losses compare step by step."""
    world = cfg.world
    if world.size == 1:
        return _source(cfg, cfg.batch)
    rows = slice(world.rank * cfg.batch, (world.rank + 1) * cfg.batch)
    return ((x[rows], y[rows]) for x, y in _source(cfg, cfg.batch * world.size))
