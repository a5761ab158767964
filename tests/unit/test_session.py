"""make session's nanoGPT reference: bench.py's output read after its burn-in, a missing checkout
and a bench that prints no timing refused."""

import textwrap

from helpers import BENCH_OUTPUT

from utils.drivers import nanogpt_bench


def test_nanogpt_bench_output_is_read_after_its_burn_in():
    assert nanogpt_bench.parse(BENCH_OUTPUT) == (27.7, 40.0)


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
