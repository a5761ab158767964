"""make plan_check end to end: every row labelled and the bars."""

import pytest
from helpers import run_make

from utils.plan import bands, reference
from utils.plan import cpu as plan_cpu

pytestmark = pytest.mark.longest  # every table planned: 15 of CI's 18 e2e minutes on the 2-core EPYC


def test_make_plan_check_prints_every_row_labelled_and_the_bars(results_file):
    proc = run_make("plan_check", results_file=results_file)
    assert proc.returncode == 0, proc.stderr
    out, section = proc.stdout.split(bands.HEADING)
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| ---")]
    labelled = [r for r in rows if " allocated |" in r or " device total |" in r or " tracked |" in r]
    cpu = len(plan_cpu.TRACKED_TECHNIQUES) * 2
    assert len(labelled) == len(reference.H100_PEAKS) + len(reference.GPT2XL_TOTALS) + cpu
    for name in ("H100 allocated", "GPT2-XL study device total", "GPT2-XL study order", "this CPU tracked",
                 "torchtitan max reserved", "torchtitan tokens/s", "torchtune peak active", "torchtune tokens/s",
                 "torchtune ladder peak active", "torchtune ladder tokens/s", "torchtune ladder order",
                 "H200 (this suite's runs) allocated", "H200 (this suite's runs) tokens/s"):
        assert f"- {name}" in out
    # the error bands: every GPU figure compared lands in one (figure, kind); the H100 table alone has 13 allocated
    found = bands.read_lines(section.splitlines())
    assert sum(b.rows for (figure, _), b in found.items() if figure == "allocated") >= len(reference.H100_PEAKS)
