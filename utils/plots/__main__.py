"""python -m utils.plots [--compare]: make plots, or make compare's histogram of A - B
(RESULTS_FILE, PLOTS_DIR, PLOTSPREFIX, DEVICE_FILTER, A, B from the environment)."""

import sys

from utils import catalog, checks, registry, settings
from utils.plots import part_suffix, plots_for, select
from utils.plots.steps import plot_time_difference


@checks.command("plots")
def main(argv=None):
    compare = (argv or sys.argv[1:]) == ["--compare"]
    given = settings.read()
    out = checks.output_dir("PLOTS_DIR", given.plots_dir)
    prefix = checks.file_prefix("PLOTSPREFIX", given.plotsprefix)
    df, notes = select(given.results_file, given.device_filter)
    if compare:
        # a combination by its canonical name, as its rows carry it (lion+flash: flash+lion); a typo refused
        a, b = (registry.check([name], variable)[0] for name, variable in ((given.a, "A"), (given.b, "B")))
        out.mkdir(parents=True, exist_ok=True)
        name = f"{prefix}timediff{part_suffix(given.part)}_{a}_vs_{b}.png"
        path, mean, low, high, verdict = plot_time_difference(df, a, b, out / name, given.part)
        paths = [path]
        notes.append(f"{a} - {b}: mean {mean:+.3f} ms of {catalog.STEP_PARTS[given.part][1]} per BATCH x SEQ tokens, "
                     f"95% CI [{low:+.3f}, {high:+.3f}]: {verdict}")
    else:
        paths, more = plots_for(df, out, prefix, given.part)
        notes += more
    for line in [*notes, *(f"wrote {p}" for p in paths)]:
        print(f"plots: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
