"""make session: the one call that, on any device, runs its tests and writes the figures."""

import textwrap

import pytest
from helpers import run_make

from utils import results
from utils.drivers import nanogpt_bench

# the format of nanoGPT bench.py's lines (its source: print(f"time per iteration: ...ms, MFU: ...%"))
BENCH_OUTPUT = """Compiling model...
0/10 loss: 10.9
time per iteration: 31.2500ms, MFU: 35.10%
0/20 loss: 10.2
time per iteration: 27.7000ms, MFU: 40.00%
"""


def test_nanogpt_bench_output_is_read_after_its_burn_in():
    assert nanogpt_bench.parse(BENCH_OUTPUT) == (27.7, 40.0)


@pytest.mark.e2e
def test_session_on_this_cpu_writes_tests_figures_and_the_reference(tmp_path):
    fake_nanogpt = tmp_path / "nanoGPT"
    fake_nanogpt.mkdir()
    (fake_nanogpt / "bench.py").write_text(f"print({BENCH_OUTPUT!r})\n")
    out = tmp_path / "session"
    proc = run_make(
        "session",
        "TECHNIQUES=baseline fused",
        f"SESSION_DIR={out}",
        f"NANOGPT_DIR={fake_nanogpt}",
        results_file=tmp_path / "unused.csv",
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "skipped" in (out / "gpu_tests.log").read_text()  # no CUDA here
    assert set(results.read(out / "results.csv")["technique"]) == {"baseline", "fused"}
    assert "| `fused` |" in (out / "REPORT.md").read_text()
    assert list(out.glob("*_speedup_bars.png"))
    reference = (out / "nanogpt_bench.txt").read_text()
    assert "27.70 ms/iter" in reference and f"{12 * 1024 / 0.0277 / 1e3:.1f}k tokens/s" in reference


def test_a_missing_nanogpt_checkout_is_one_line(tmp_path, capsys):
    assert nanogpt_bench.main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"nanogpt_bench: error: no bench.py in NANOGPT_DIR={tmp_path}"


def test_a_bench_that_prints_no_timing_is_an_error(tmp_path, capsys):
    (tmp_path / "bench.py").write_text(
        textwrap.dedent("""
        import sys
        sys.exit("CUDA not available")
    """)
    )
    assert nanogpt_bench.main([str(tmp_path)]) == 1
    assert "no 'time per iteration' line" in capsys.readouterr().err
