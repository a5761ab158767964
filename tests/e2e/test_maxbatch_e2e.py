"""make maxbatch end to end: a real memory cap on each trial on a CPU."""

from helpers import run_make

from utils import results


def test_maxmem_caps_each_trial_for_real(results_file):
    # tiny at T=2048: the T x T scores take ~0.4 GB per sequence, so a 0.8 GiB cap stops B at 1 or 2
    proc = run_make("maxbatch", "TECHNIQUE=baseline", "MAXMEM_GIB=0.8", results_file=results_file, SEQ="2048",
                    STEPS="1")
    assert proc.returncode == 0, proc.stderr
    row = results.read(results_file).iloc[-1]
    assert row["phase"] == "maxbatch" and row["kind"] == "measured" and row["technique"] == "baseline"
    best = int(row["batch"])
    assert 1 <= best < 8 and f" {best + 1} x" in proc.stdout  # the next batch up hit the cap
    # each trial said as it ended
    assert f"maxbatch: baseline: B={best} trained (" in proc.stdout
    assert f"maxbatch: baseline: B={best + 1} ran out of memory (" in proc.stdout
