"""Error bands: the kind of a plan, the spread per (figure, kind), and plan_check's section read back."""

from types import SimpleNamespace

import pytest

from utils.plan import bands


def _plan(compiled=False, adapter="", optimizer="torch.optim.AdamW", graphed=None, comm=None, bound="GPU"):
    record = {"compiled": compiled, "adapter": adapter, "optimizer": optimizer}
    time = SimpleNamespace(bound={"forward": bound, "backward": "GPU", "optimizer": "host"}, comm=comm)
    return SimpleNamespace(record=record, time=time, graphed=graphed)


@pytest.mark.parametrize(("plan", "memory", "step"), [
    (_plan(), "eager", "eager"),  # a host-bound optimizer phase alone does not make the step host-bound
    (_plan(bound="host"), "eager", "host-bound"),
    (_plan(compiled=True), "compiled", "compiled"),
    (_plan(compiled=True, graphed="compiled"), "CUDA graphs", "CUDA graphs"),
    (_plan(optimizer="bitsandbytes.optim.AdamW8bit"), "bitsandbytes", "bitsandbytes"),
    (_plan(adapter="lora", optimizer="bitsandbytes.optim.AdamW8bit"), "adapters", "adapters"),
    (_plan(compiled=True, comm=object(), bound="host"), "N GPUs", "host-bound"),
])
def test_the_first_kind_that_applies_names_the_plan(plan, memory, step):
    assert bands.kind_of(plan, "allocated") == memory
    assert bands.kind_of(plan, "device total") == memory
    assert bands.kind_of(plan, "step time") == step


def test_a_band_is_the_lowest_and_highest_error_of_its_kind():
    seen = []
    for error, plan in ((-0.1, _plan()), (0.05, _plan()), (0.5, _plan(compiled=True))):
        bands.observe(seen, plan, "step time", error, "row")
    found = bands.bands(seen)
    assert found["step time", "eager"] == bands.Band(-0.1, 0.05, 2)
    assert found["step time", "compiled"] == bands.Band(0.5, 0.5, 1)
    assert ("allocated", "eager") not in found
    assert bands.band_text(found, "step time", "eager") == "-10%…+5% (2)"
    assert bands.band_text(found, "allocated", "eager") == "–"


def test_step_error_from_a_tokens_error():
    # predicted 2x the tokens/s: the step predicted at half the time measured
    assert bands.step_error(1.0) == pytest.approx(-0.5)


def test_plan_checks_section_reads_back(tmp_path):
    rows = (("allocated", "eager", -0.25, "a"), ("allocated", "eager", 0.125, "b"),
            ("reserved", "N GPUs", -0.375, "c"), ("step time", "host-bound", 4.75, "d"))
    seen = [bands.Observation(*row) for row in rows]
    doc = tmp_path / "plan_check.md"
    doc.write_text("## plan_check\n\n| figure | kind | rows | x | y |\n| allocated | eager | 9 | +0% | +0% |\n\n"
                   + "\n".join(bands.table(seen)) + "\n\n### after\n| allocated | compiled | 1 | +1.0% | +1.0% |\n")
    assert bands.read(doc) == bands.bands(seen)
    assert bands.read(tmp_path / "missing.md") == {}


def test_the_shipped_bands_name_known_figures_and_kinds():
    lines = bands.DOC.read_text().splitlines()
    assert bands.HEADING in lines, "make plan_check > docs/plan_check.md writes the bands"
    rows = [line for line in lines[lines.index(bands.HEADING):] if line.startswith("| ") and "---" not in line][1:]
    found = bands.read()
    assert len(found) == len(rows) > 0  # every row of the section parsed
    assert {figure for figure, _ in found} <= set(bands.FIGURES)
    assert {kind for _, kind in found} <= set(bands.KINDS)


def test_a_kinds_memory_band_is_allocated_or_the_figure_plan_check_has():
    found = {("allocated", "eager"): bands.Band(-0.02, 0.0, 14), ("reserved", "N GPUs"): bands.Band(-0.15, 0.24, 4)}
    assert bands.memory_text(found, "eager") == "-2%…+0%"
    assert bands.memory_text(found, "N GPUs") == "reserved -15%…+24%"
    assert bands.memory_text(found, "compiled") == "–"
