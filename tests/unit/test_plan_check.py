"""make plan_check: its order check and bars on rows with known answers."""

import types

from utils import registry
from utils.plan import reference, torchtune_ladder


def test_the_order_check_names_each_pair_out_of_order():
    rows = [("a", 30.0, 31.0), ("b", 20.0, 19.0), ("c", 25.0, 18.0)]  # (label, measured, predicted)
    assert reference._order_misses(rows) == [("b", "c")]
    assert reference._order_misses(rows[:2]) == []


def test_a_bar_is_met_missed_or_missed_with_each_miss_explained(capsys):
    errors = [("x", 0.01), ("y", -0.2)]
    assert reference._bar_line("t", errors, 0.05) is False
    assert reference._bar_line("t", errors, 0.05, explained={"y"}) is True
    assert reference._bar_line("t", errors[:1], 0.05) is True
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "- t: 1 of 2 within 5% (largest error 20.0%): **missed** (y)"
    assert out[1].endswith("missed, each miss explained (y)") and out[2].endswith(": met")


def test_the_ladder_adds_one_technique_per_full_row_and_its_readings_name_rows():
    full = [registry.combination(t).parts for label, t, lora, *_ in torchtune_ladder.ROWS if not lora]
    for above, row in zip(full, full[1:]):
        assert len(set(row) - set(above)) == 1, row  # each rung adds one technique to the one above
    labels = {row[0] for row in torchtune_ladder.ROWS}
    assert all(label in labels and registry.combination(t) for label, _, t in torchtune_ladder.READINGS)


def test_the_ladder_order_line_says_whether_predicted_memory_keeps_the_measured_order():
    # (label, memory error, tokens error, measured GiB, predicted GiB, measured tokens/s, predicted tokens/s)
    found = [("a", 0, 0, 60.0, 58.0, 7000, 7100), ("b", 0, 0, 50.0, 49.0, 9000, 8800),
             ("c", 0, 0, 20.0, 25.0, 7200, 7300)]
    assert "peak active the same as measured (Spearman 1.000); tokens/s Spearman 1.000" in \
        torchtune_ladder.order_line(found)
    swapped = [found[0], (*found[1][:4], 10.0, *found[1][5:]), found[2]]
    assert "**differs**" in torchtune_ladder.order_line(swapped)


def test_foreach_adamw_is_ruled_out_by_its_own_state_above_the_measured_checkpointing_row():
    measured = {label: gib for label, *_, gib in torchtune_ladder.ROWS}
    text = torchtune_ladder._ruled_out(3_212_749_824, measured)  # Llama 3.2 3B: 5 x 2 bytes x 3.21e9 = 29.9 GiB
    assert "29.9 GiB in bf16" in text and "above the 24.9 GiB measured at '+ activation checkpointing'" in text
    assert all(t.endswith("+fused") for label, t, *_ in torchtune_ladder.ROWS[:6])  # counted: fused, as ruled


def test_the_8bit_rungs_first_step_under_torch_2_5_is_counted_at_its_largest_parameter():
    # the step's kernel of the tied embedding (128,256 x 3,072, Llama 3.2 3B's largest parameter): with bf16
    # weights its gradient, the clone of the weight written in and out and the weight itself take 2 bytes an
    # element each time, with fp32 ones 4: 6 bytes an element apart
    def first_step(dtype):
        plan = types.SimpleNamespace(breakdown={"params": 6000.0, "optimizer": 6000.0}, record={"dtype": dtype})
        return torchtune_ladder._first_step_in_torch_2_5(plan)

    assert first_step("fp32") - first_step("bf16-weights") == 6 * 128256 * 3072
    assert first_step("bf16-weights") > 12000 * 2**20 + 4 * 128256 * 3072 + torchtune_ladder.L2_FLUSH_BYTES
