"""Data with a known floor and a held-out split: the coin, the Markov chain's exact entropy
rate against brute force, text and nanoGPT token files, and what is refused before training."""

import itertools
import math
import re

import numpy as np
import pytest
import torch

from utils.measure import data
from utils.techniques.parallel import World


def test_the_coin_floor_is_the_entropy_of_bernoulli_two_thirds():
    assert data.floor("coinflip") == data.floor("fixed") == pytest.approx(0.6365, abs=1e-4)
    assert data.floor("some/file.txt") is None


def test_markov_entropy_rate_matches_brute_force_block_entropies():
    # for a stationary first-order chain H(X1..Xn) - H(X1..Xn-1) is the entropy rate for n >= 2:
    # enumerate every sequence of length 3 and 2, nothing shared with the closed form
    transition, stationary = data.markov_chain()
    states = range(data.MARKOV_STATES)

    def block_entropy(n):
        total = 0.0
        for seq in itertools.product(states, repeat=n):
            p = stationary[seq[0]] * math.prod(transition[a, b] for a, b in zip(seq, seq[1:]))
            total -= p * math.log(p)
        return total

    assert np.allclose(stationary @ transition, stationary) and stationary.sum() == pytest.approx(1.0)
    assert data.markov_entropy_rate() == pytest.approx(block_entropy(3) - block_entropy(2), rel=1e-9)
    assert 0.5 < data.markov_entropy_rate() < math.log(data.MARKOV_STATES)  # something to learn, not trivial


def test_markov_batches_follow_the_chain():
    # the mean surprise of the generated transitions estimates the entropy rate
    x, y = next(data.markov(64, 128, "cpu", seed=0))
    transition = torch.tensor(data.markov_chain()[0])
    surprise = -torch.log(transition[x, y]).mean().item()
    assert surprise == pytest.approx(data.markov_entropy_rate(), abs=0.03)
    assert torch.equal(x[:, 1:], y[:, :-1]) and x.dtype == torch.long


class Cfg:
    def __init__(self, source, batch=2, seq=8, seed=0):
        self.data, self.batch, self.seq, self.device, self.seed = source, batch, seq, "cpu", seed
        self.world, self.reference_ranks = World(), 1  # one process, training on its own batches


def test_validation_batches_are_held_out_and_fixed():
    for source in ("coinflip", "markov"):
        train = next(data.batches(Cfg(source)))[0]
        first, again = data.validation_batches(Cfg(source), 2), data.validation_batches(Cfg(source), 2)
        assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again))  # every evaluation sees the same
        assert not torch.equal(first[0][0], train)
    # fixed trains on one batch; its validation is fresh flips, so the loss shows memorisation
    fixed_val = data.validation_batches(Cfg("fixed"), 2)
    assert not torch.equal(fixed_val[0][0], fixed_val[1][0])


def test_a_text_file_holds_out_its_last_tenth(tmp_path):
    path = tmp_path / "text.txt"
    path.write_bytes(bytes(range(100)) * 10)
    train, val = data.file_splits(path)
    assert (len(train), len(val)) == (900, 100) and val[0] == 0 and train.dtype == np.uint8
    x, y = next(data.batches(Cfg(str(path))))
    assert x.shape == (2, 8) and torch.equal(x[:, 1:], y[:, :-1])


def test_nanogpt_token_files_are_memory_mapped_with_their_val_bin(tmp_path):
    tokens = np.arange(3000, dtype=np.uint16) % 50000
    tokens.tofile(tmp_path / "train.bin")
    np.full(200, 7, dtype=np.uint16).tofile(tmp_path / "val.bin")
    train, val = data.file_splits(tmp_path / "train.bin")
    assert isinstance(train, np.memmap) and len(train) == 3000 and set(val.tolist()) == {7}
    (held_out,) = data.validation_batches(Cfg(str(tmp_path / "train.bin")), 1)
    assert (held_out[0] == 7).all()
    tokens.tofile(tmp_path / "other.bin")  # no val.bin pairing: the last tenth
    assert len(data.file_splits(tmp_path / "other.bin")[1]) == 300


@pytest.mark.parametrize(
    "content, name, message",
    [
        (b"\x01\x02\x03", "odd.bin", "not a whole number of 2-byte"),
        (
            b"a" * 100,
            "small.txt",
            "validation split holds 10 tokens, too few for one batch of BATCH=2 x (SEQ=8 + 1) = 18",
        ),
        (np.full(100, 300, dtype=np.uint16).tobytes(), "big.bin", "token 300, beyond the model's vocabulary of 256"),
    ],
)
def test_files_that_cannot_train_are_refused(tmp_path, content, name, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(message)):
        data.check(str(path), 2, 8, 256)
