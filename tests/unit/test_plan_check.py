"""make plan_check: its order check and bars on rows with known answers."""

from utils.plan import reference


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
