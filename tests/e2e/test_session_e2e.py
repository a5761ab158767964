"""make session on this CPU: its tests, the figures and the reference in one call."""

from helpers import BENCH_OUTPUT, run_make

from utils import results


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
