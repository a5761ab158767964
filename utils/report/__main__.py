"""python -m utils.report: make report (REPORT, RESULTS_FILE, PLOTS_DIR, PLOTSPREFIX,
DEVICE_FILTER, BUDGET_GIB, PEAK_TFLOPS, TARGET_LOSS from the environment)."""

import sys

from utils import checks, settings
from utils.analysis import convergence
from utils.report import build


@checks.command("report", convergence.TargetError)
def main():
    # every setting first, so a bad one stops before any plot is drawn
    given = settings.read()
    out = given.report
    checks.output_file("REPORT", out, given.results_file)
    checks.output_dir("PLOTS_DIR", given.plots_dir)
    prefix = checks.file_prefix("PLOTSPREFIX", given.plotsprefix)
    text = build(given.results_file, out, given.plots_dir, prefix, given.device_filter, given.budget_gib,
                 given.peak_tflops, given.target_loss)
    print("\n".join(line for line in text.splitlines() if not line.startswith("![")))
    print(f"\nreport: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
