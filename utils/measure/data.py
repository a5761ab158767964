"""Batches of (inputs, targets), each (B, T) int64, made on the training device, with a
held-out validation split for every source.

Sources (DATA=):
- coinflip: every token is 1 with probability 2/3, else 0, drawn fresh per batch on the
  device, so no host->device copy sits in the step. The best possible loss is the
  entropy of the coin, COIN_FLIP_ENTROPY nats, which makes convergence easy to read.
- fixed: one coin-flip batch drawn once and reused every step (nanoGPT bench's
  real_data=False), which takes data generation out of the loop entirely; the loss then
  measures memorisation, not learning.
- markov: a first-order Markov chain over MARKOV_STATES symbols whose transition matrix is
  drawn once from a fixed seed (the same chain for every SEED), each sequence started from
  the stationary distribution, so every target is one transition and the best possible loss
  is the chain's entropy rate, computed exactly (markov_entropy_rate).
- a text file at byte level (vocab 256): random windows of its bytes.
- a nanoGPT-style token file, `*.bin`: uint16 tokens, memory-mapped (np.memmap), never read whole.

Validation: coinflip, fixed and markov draw held-out batches from their own generator (a
seed no training batch uses); files hold out their last VAL_FRACTION, or, for
`.../train.bin` with a `val.bin` beside it (nanoGPT's layout), that file. Each split must
hold one batch of BATCH x (SEQ + 1) tokens; check() says so before anything trains.
"""

import math
from pathlib import Path

import numpy as np
import torch

P_ONE = 2 / 3
COIN_FLIP_ENTROPY = -(P_ONE * math.log(P_ONE) + (1 - P_ONE) * math.log(1 - P_ONE))  # ~0.6365
SOURCES = ("coinflip", "fixed", "markov")  # besides a path to a text file or a .bin token file

MARKOV_STATES = 8
MARKOV_SEED = 0  # fixed: the chain (and so its entropy rate) is the same whatever SEED is
MARKOV_CONCENTRATION = 0.5  # Dirichlet parameter of each row: < 1 makes rows peaked, so there is something to learn
VAL_FRACTION = 0.1  # of a file, held out for validation (nanoGPT's shakespeare split)
VAL_SEED_OFFSET = 1_000_003  # validation generators are seeded SEED + this: no training batch repeats them
TOKEN_DTYPE = np.uint16  # nanoGPT's .bin files


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


def markov_chain():
    """(transition matrix P, stationary distribution pi) of the MARKOV_STATES-symbol chain."""
    rng = np.random.default_rng(MARKOV_SEED)
    transition = rng.dirichlet([MARKOV_CONCENTRATION] * MARKOV_STATES, size=MARKOV_STATES)
    # pi P = pi: the left eigenvector of eigenvalue 1, normalised
    values, vectors = np.linalg.eig(transition.T)
    stationary = np.real(vectors[:, np.argmin(np.abs(values - 1))])
    return transition, stationary / stationary.sum()


def markov_entropy_rate():
    """Exact entropy rate in nats: sum_i pi_i * H(P_i), the stationary mix of row entropies."""
    transition, stationary = markov_chain()
    rows = -(transition * np.log(transition)).sum(axis=1)
    return float(stationary @ rows)


def markov(batch, seq, device, seed, chunk=64):
    """Sequences of the chain; `chunk` batches are generated at once, so the T sequential
    transitions are vectorised over chunk x B chains instead of paid per batch."""
    transition, stationary = (torch.tensor(a, dtype=torch.float64, device=device) for a in markov_chain())
    cumulative = transition.cumsum(dim=1)
    cumulative[:, -1] = 1.0  # rounding: a uniform draw must always land in some state
    gen = torch.Generator(device=device).manual_seed(seed)
    while True:
        n = chunk * batch
        states = torch.empty(n, seq + 1, dtype=torch.long, device=device)
        states[:, 0] = torch.multinomial(stationary, n, replacement=True, generator=gen)
        draws = torch.rand(n, seq, dtype=torch.float64, device=device, generator=gen)
        for t in range(seq):
            row = cumulative[states[:, t]]  # (n, K)
            states[:, t + 1] = (row < draws[:, t : t + 1]).sum(dim=1).clamp_(max=MARKOV_STATES - 1)
        for window in states.view(chunk, batch, seq + 1):
            yield window[:, :-1], window[:, 1:]


def _is_token_file(path):
    return Path(path).suffix == ".bin"


def file_splits(path):
    """(train, validation) arrays of a text or token file (memory-mapped, not read)."""
    path = Path(path)
    dtype = TOKEN_DTYPE if _is_token_file(path) else np.uint8
    if path.stat().st_size % np.dtype(dtype).itemsize:
        raise ValueError(
            f"DATA={path} is {path.stat().st_size} bytes, not a whole number of {np.dtype(dtype).itemsize}-byte "
            "uint16 tokens: not a nanoGPT token file (a text file must not end in .bin)"
        )
    tokens = np.memmap(path, dtype=dtype, mode="r") if path.stat().st_size else np.zeros(0, dtype)
    val_file = path.with_name("val.bin")
    if path.name == "train.bin" and val_file.is_file():
        return tokens, file_splits(val_file)[0]
    cut = int(len(tokens) * (1 - VAL_FRACTION))
    return tokens[:cut], tokens[cut:]


def file_windows(tokens, batch, seq, device, seed):
    gen = np.random.default_rng(seed)
    while True:
        starts = gen.integers(len(tokens) - seq, size=batch)
        window = torch.from_numpy(np.stack([tokens[s : s + seq + 1] for s in starts]).astype(np.int64))
        window = window.to(device)  # (B, T+1)
        yield window[:, :-1], window[:, 1:]


def floor(source):
    """The lowest loss any model can reach on `source`'s held-out data, in nats, or None
    where it is not known (text and token files)."""
    if source in ("coinflip", "fixed"):  # fixed trains on one batch; its validation is fresh flips
        return COIN_FLIP_ENTROPY
    if source == "markov":
        return markov_entropy_rate()
    return None


def check(source, batch, seq, vocab_size):
    """Raise ValueError, with the reason in one line, if a file source cannot give a batch
    of each split or holds tokens the model's vocabulary does not (vocab_size None: unknown)."""
    if source in SOURCES:
        symbols = MARKOV_STATES if source == "markov" else 2
        if vocab_size is not None and vocab_size < symbols:
            raise ValueError(f"DATA={source} draws {symbols} symbols, more than the model's vocabulary of {vocab_size}")
        return
    need = batch * (seq + 1)
    for name, split in zip(("training", "validation"), file_splits(source)):
        if len(split) < need:
            raise ValueError(
                f"DATA={source}: its {name} split holds {len(split)} tokens, too few for one batch of "
                f"BATCH={batch} x (SEQ={seq} + 1) = {need}"
            )
        # note: one pass over the file; memmap reads it in pages, it is never held whole
        largest = int(split.max())
        if vocab_size is not None and largest >= vocab_size:
            raise ValueError(
                f"DATA={source} holds token {largest}, beyond the model's vocabulary of {vocab_size} (a larger MODEL?)"
            )


def _stream(source, batch, seq, device, seed, split):
    if source == "coinflip" or (source == "fixed" and split == 1):
        return coin_flips(batch, seq, device, seed)
    if source == "fixed":
        return fixed(batch, seq, device, seed)
    if source == "markov":
        return markov(batch, seq, device, seed)
    return file_windows(file_splits(source)[split], batch, seq, device, seed)


def batches(cfg):
    """This process's training batches. Under DDP/FSDP every rank draws the same global batch
    of world x BATCH sequences and keeps its slice: the sequences a single process at BATCH x
    world would see, so the two runs' losses compare step by step. The loss check's one
    process (cfg.reference_ranks = N) draws the same global batches and yields each one's N
    slices in rank order, as N micro-batches it accumulates: the ranks' data at one rank's
    memory."""
    world, ranks = cfg.world, cfg.reference_ranks
    if world.size == 1 and ranks == 1:
        return _stream(cfg.data, cfg.batch, cfg.seq, cfg.device, cfg.seed, split=0)
    stream = _stream(cfg.data, cfg.batch * max(world.size, ranks), cfg.seq, cfg.device, cfg.seed, 0)
    if world.size > 1:
        rows = slice(world.rank * cfg.batch, (world.rank + 1) * cfg.batch)
        return ((x[rows], y[rows]) for x, y in stream)
    return ((x[r * cfg.batch:(r + 1) * cfg.batch], y[r * cfg.batch:(r + 1) * cfg.batch])
            for x, y in stream for r in range(ranks))


def validation_batches(cfg, count):
    """`count` held-out batches, drawn once: every evaluation of a run, and every run with
    the same SEED, sees the same ones, so validation curves compare point by point."""
    stream = _stream(cfg.data, cfg.batch, cfg.seq, cfg.device, cfg.seed + VAL_SEED_OFFSET, split=1)
    return [next(stream) for _ in range(count)]
