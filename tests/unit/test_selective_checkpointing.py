"""Selective activation checkpointing: the same gradients as no checkpointing, torchtitan's choice
of what to save, memory between none and whole blocks, and one checkpointing policy per run."""

import collections
from types import SimpleNamespace

import pytest
import torch
from helpers import bare_run, run_config
from torch.utils.checkpoint import CheckpointPolicy

from utils import checks, registry
from utils import techniques as t
from utils.measure import data
from utils.plan import planner
from utils.registry import load_setup
from utils.techniques import selective

CFG = run_config("x", steps=1, warmup=0, model="tiny", batch=4, seq=64, device="cpu", data="fixed", seed=0, lr=1e-3)
aten = torch.ops.aten


def test_the_gradients_are_those_of_no_checkpointing():
    plain, saving = bare_run(), bare_run()
    t.checkpoint_blocks(saving, policy="selective")
    x, y = next(data.coin_flips(2, 16, "cpu", 1))
    losses = [run.model(x, y)[1] for run in (plain, saving)]
    torch.testing.assert_close(losses[1], losses[0])
    for loss in losses:
        loss.backward()
    for a, b in zip(plain.model.parameters(), saving.model.parameters()):
        torch.testing.assert_close(b.grad, a.grad)
    assert saving.record()["checkpointing"] is True and saving.record()["checkpoint_policy"] == "selective"


def test_attention_and_every_other_matmul_are_saved_in_forward_and_in_the_recompute():
    ops = (aten.addmm.default, aten._scaled_dot_product_flash_attention.default, aten.addmm.default,
           aten.gelu.default, aten.mm.default, aten.addmm.default)

    def choices(recompute, counts):
        return [selective._policy(counts, SimpleNamespace(is_recompute=recompute), op) for op in ops]

    save, recompute = CheckpointPolicy.MUST_SAVE, CheckpointPolicy.PREFER_RECOMPUTE
    counts = collections.Counter()  # one block's: forward, then its recompute in backward
    assert choices(False, counts) == [save, save, recompute, recompute, save, recompute]
    assert choices(True, counts) == choices(False, collections.Counter())


def test_the_planned_activations_sit_between_no_checkpointing_and_whole_blocks():
    peaks = {name: planner.plan(load_setup(name), CFG).breakdown["activations"]
             for name in ("baseline", "checkpointing", "selective_checkpointing")}
    assert peaks["checkpointing"] < peaks["selective_checkpointing"] < peaks["baseline"]


def test_a_run_has_one_checkpointing_policy():
    with pytest.raises(checks.BadInput, match="each choose the checkpointing"):
        registry.combination("checkpointing+selective_checkpointing")
