"""`make profile TECHNIQUE=adam`: where one technique's step time goes, per operator.

Runs the technique's own setup (from scripts/<technique>.py), warms up, then records STEPS
steps under torch.profiler and writes the top operators by self time ("total time per
operation"): a text table, a CSV of every operator and a bar plot, into PLOTS_DIR.
The profiler adds overhead, so these times are for finding hot spots, not for results.csv.

usage: python -m utils.drivers.profile   (TECHNIQUE, PLOTS_DIR, PLOTSPREFIX and the run
settings from the environment)
"""

import csv
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from utils import checks, registry, settings
from utils.measure import config, data, loop
from utils.measure.train import build_run
from utils.techniques import Skip, setup_of

TOP = 20  # operators in the table and the plot


def operator_times(prof, steps, cuda):
    """[(operator, calls per step, self ms per step, total ms per step)], by self time."""
    rows = []
    for event in prof.key_averages():
        self_us = event.self_device_time_total if cuda else event.self_cpu_time_total
        total_us = event.device_time_total if cuda else event.cpu_time_total
        rows.append((event.key, event.count / steps, self_us / 1e3 / steps, total_us / 1e3 / steps))
    return sorted(rows, key=lambda row: row[2], reverse=True)


def plot(rows, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 0.35 * len(rows) + 1.8))
    ax.barh([r[0][:60] for r in rows], [r[2] for r in rows], color="#457b9d")
    ax.invert_yaxis()
    ax.set(xlabel="self time per step (ms)", ylabel="operator", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


@checks.command("profile")
def main():
    try:
        given = settings.read()
        out = checks.output_dir("PLOTS_DIR", given.plots_dir)
        prefix = checks.file_prefix("PLOTSPREFIX", given.plotsprefix)
        technique, setup = setup_of(registry.one_chosen(given))
        cfg = config.load(technique, given, check_results=False)  # writes no results
        run = build_run(cfg, setup)
    except Skip as why:
        print(f"profile: {technique} skipped: {why}")
        return 0
    cuda = cfg.device == "cuda"
    batches = data.batches(cfg)
    loop.measure(run, batches, steps=1, warmup=cfg.warmup)  # compile, autotune, allocate first
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(cfg.steps):
            loop.one_step(run, batches)
        if cuda:
            torch.cuda.synchronize()
    rows = operator_times(prof, cfg.steps, cuda)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{prefix}profile_{technique}"
    clock = "GPU" if cuda else "CPU"
    shape = f"{cfg.model}, B={cfg.batch} T={cfg.seq}, {cfg.steps} steps"
    title = f"{technique}: top operators by {clock} self time, per step ({shape})"
    table = prof.key_averages().table(sort_by=f"self_{'device' if cuda else 'cpu'}_time_total", row_limit=TOP)
    Path(f"{stem}.txt").write_text(f"{title}\n\n{table}\n")
    with open(f"{stem}.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["operator", "calls_per_step", f"self_{clock.lower()}_ms_per_step", f"total_{clock.lower()}_ms_per_step"]
        )
        writer.writerows(rows)
    plot(rows[:TOP], f"{stem}.png", title)
    print(table)
    print(f"profile: wrote {stem}.txt, {stem}.csv, {stem}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
