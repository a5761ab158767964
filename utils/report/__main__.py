"""python -m utils.report: make report (REPORT, RESULTS_FILE, PLOTS_DIR, PLOTSPREFIX,
DEVICE_FILTER, BUDGET_GB, PEAK_TFLOPS, TARGET_LOSS from the environment)."""

import sys

from utils import checks, settings
from utils.analysis import convergence
from utils.report import build


@checks.command("report", convergence.TargetError)
def main():
    # every setting first, so a bad one stops before any plot is drawn
    budget, peak, target = (settings.get(name) for name in ("BUDGET_GB", "PEAK_TFLOPS", "TARGET_LOSS"))
    out = settings.text("REPORT")
    checks.output_file("REPORT", out)
    plots_dir = settings.text("PLOTS_DIR")
    checks.output_dir("PLOTS_DIR", plots_dir)
    prefix = checks.file_prefix("PLOTSPREFIX", settings.text("PLOTSPREFIX"))
    text = build(settings.text("RESULTS_FILE"), out, plots_dir, prefix, settings.text("DEVICE_FILTER"), budget,
                 peak, target)
    print("\n".join(line for line in text.splitlines() if not line.startswith("![")))
    print(f"\nreport: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
