"""make tune's answer: the ranked table, what was pruned and why, the Pareto front of tokens/s
against device memory, the command to paste; printed, and written to TUNE_REPORT (markdown).
Every figure is predicted (the planner's), none measured; a screened figure says so."""

import dataclasses
from pathlib import Path

from utils import devices
from utils.plan import bands
from utils.tune import search
from utils.tune.plans import screen_depths

TOP = 10  # rows of the ranked table
BANDS_NOTE = ("band: the lowest and highest error (predicted / measured - 1) make plan_check found among its GPU rows "
              "of the same kind of plan (memory: allocated, or the figure named; utils/plan/bands.py, "
              "docs/plan_check.md): the spread seen, not a confidence interval; – where it has no row of that kind")


@dataclasses.dataclass
class Found:
    """The search on one GPU."""

    gpu: object  # utils.devices.GPU
    world: tuple  # (kind, GPUs)
    outcomes: list  # search.Outcome that fit, fastest first
    pruned: object  # space.Pruned
    plans: int  # plans made
    space: int  # configurations in the space at the whole batch
    global_batch: int
    budget_mib: float
    depth: int  # the model's blocks, or None (planned whole)
    note: str = ""  # how the GPU count was found, where one GPU was too small


def _gib(mib):
    return f"{mib / 1024:,.2f}"


def _ms(ms):
    return f"{ms:,.1f}" if ms >= 10 else f"{ms:.3f}"


def mfu(gpu, figures):
    peak = devices.peak_of(gpu, figures.dtype)
    return figures.flops_per_token * figures.tokens_per_s / (peak * 1e12) if peak else None


CACHED_NOTE = ("†: above the budget (the GPU's memory less MEMORY_MARGIN) only by the caching allocator's cache, "
               "which keeps freed blocks while the GPU has room: replayed in the budget, the step runs, the allocator "
               "releasing its cache where it must, as at the GPU's capacity")


def _cached(outcome, budget_mib):
    """Planned whole, fitting, its device total above the budget: the allocator's cache, grown into the room left."""
    return not outcome.figures.screened and outcome.figures.total_mib > budget_mib


def _row(rank, outcome, gpu, found_bands, budget_mib):
    f, c = outcome.figures, outcome.config
    total = f"≥ {_gib(f.least_mib)}" if f.screened else _gib(f.total_mib) + " †" * _cached(outcome, budget_mib)
    reserved = "–" if f.screened else _gib(f.reserved_mib)
    share = mfu(gpu, f)
    share = f"{share:.1%}" if share is not None else "–"
    comm = f" | {f.exposed_ms:,.1f}" if c.gpus > 1 else ""
    return (f"| {rank} | `{c.full_name}`{' (' + c.compiled_as + ')' if c.compiled_as else ''} | {c.batch} x "
            f"{c.accum}{' x ' + str(c.gpus) if c.gpus > 1 else ''} | {_ms(f.step_ms)}{comm} | {f.tokens_per_s:,.0f} | "
            f"{share} | {_gib(f.allocated_mib)} | {reserved} | {total} | {'screened' if f.screened else 'planned'} | "
            f"{bands.memory_text(found_bands, f.memory_kind)} / "
            f"{bands.band_text(found_bands, 'step time', f.step_kind, rows=False)} |")


def table(found):
    gpu, multi = found.gpu, found.world[1] > 1
    lines = [f"| rank | configuration | micro-batch x accum{' x GPUs' if multi else ''} | step ms"
             + (" | exposed comm ms" if multi else "") + " | tokens/s per GPU | MFU | allocated GiB | reserved GiB | "
             "device total GiB | figures | band: memory / step |", "|" + " --- |" * (11 + multi)]
    found_bands = bands.read()
    lines += [_row(i + 1, o, gpu, found_bands, found.budget_mib) for i, o in enumerate(found.outcomes[:TOP])]
    cached = any(_cached(o, found.budget_mib) for o in found.outcomes[:TOP])
    return lines + ["", BANDS_NOTE] + (["", CACHED_NOTE] if cached else [])


def pruned_lines(pruned):
    """space.Pruned as markdown lines: each reason, its count and one example."""
    lines = [f"- {count} {reason}: e.g. {pruned.example[reason]}" for reason, count in pruned.items()]
    return lines or ["- none"]


def _memory(o):
    return o.figures.device_mib


def pareto(outcomes):
    """The outcomes no other beats in both tokens/s and device memory (screened: its least)."""
    memory, front, best = _memory, [], 0.0
    for o in sorted(outcomes, key=lambda o: (memory(o), -o.figures.tokens_per_s)):
        if o.figures.tokens_per_s > best:
            front.append(o)
            best = o.figures.tokens_per_s
    return front, memory


def plot(found, path):
    """tokens/s per GPU against device memory, every configuration that fits, the front joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(9, 5.5))
    front, memory = pareto(found.outcomes)
    for screened, style in ((True, {"facecolors": "none"}), (False, {})):
        points = [o for o in found.outcomes if o.figures.screened == screened]
        ax.scatter([memory(o) / 1024 for o in points], [o.figures.tokens_per_s for o in points], edgecolors="C0",
                   label="screened (device total: its least)" if screened else "planned at full depth", **style)
    ax.plot([memory(o) / 1024 for o in front], [o.figures.tokens_per_s for o in front], color="C1",
            label="Pareto front")
    for o in front:
        ax.annotate(o.config.label, (memory(o) / 1024, o.figures.tokens_per_s), fontsize=7, xytext=(4, 2),
                    textcoords="offset points")
    ax.axvline(found.budget_mib / 1024, color="grey", linestyle=":", label="memory less the margin")
    ax.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
    ax.set(xlabel="device memory (GiB, predicted)", ylabel="tokens/s per GPU (predicted)",
           title=f"make tune on {found.gpu.name}: predicted, not measured")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def section(found, cfg, plot_path):
    kind, gpus = found.world
    where = f"{gpus} x {found.gpu.name} ({kind})" if gpus > 1 else f"one {found.gpu.name}"
    depths = screen_depths(gpus)
    depth = (f"each screened at {' and '.join(map(str, depths))} blocks and extrapolated to {found.depth}, "
             "the fastest then planned at full depth" if found.depth and found.depth > max(depths)
             else "each planned whole")
    lines = [f"## {cfg.model} T={cfg.seq}, global batch {found.global_batch}, on {where}", "",
             f"Predicted by the planner (fake tensors; step time a roofline), never measured: {found.space} "
             f"configurations at the whole batch, {found.plans} plans ({depth}). Fits: the step runs in "
             f"{found.budget_mib / 1024:,.1f} GiB (the GPU's {found.gpu.memory_gib:g} GiB less the margin), its "
             "allocations replayed through the caching allocator with only that much, and at the GPU's own memory "
             "the allocator does not release its cache every step. A screened row was not planned at full depth: "
             "its device total is its least (allocated + CUDA context: the caching allocator's reserved memory may "
             "not fit) and its time is extrapolated; the planned rows are confirmed.", ""]
    if found.note:
        lines += [found.note, ""]
    if not found.outcomes:
        return lines + ["**Nothing fits.**", "", "Pruned:", *pruned_lines(found.pruned), ""]
    win = found.outcomes[0]
    if win.figures.screened:
        lines += ["**No configuration was confirmed to fit at full depth** (see the device totals left out below); "
                  "the fastest screened one, whose device total is only a lower bound:", ""]
    faster = [o for o in found.outcomes if o.figures.screened and o.figures.tokens_per_s > win.figures.tokens_per_s]
    if faster:  # the search stopped confirming (CONFIRM_ROUNDS) before reaching them
        best = faster[0]
        most = search.CONFIRM * search.CONFIRM_ROUNDS
        lines += [f"**{len(faster)} faster screened, not confirmed**: the search plans at most {most} configurations "
                  "at full depth, and those it planned before them did not fit; the fastest, "
                  f"`{best.config.label}` ({best.figures.tokens_per_s:,.0f} tokens/s, device total ≥ "
                  f"{_gib(best.figures.least_mib)} GiB), may fit: `make plan` it to know.", ""]
    lines += [f"**Run:** `{win.config.command()}` ({win.figures.tokens_per_s:,.0f} tokens/s per GPU predicted)", "",
              *([f"(the same with torchrun: `{win.config.torchrun()}`)", ""] if win.config.gpus > 1 else []),
              *table(found), "", "Left out, by reason:", *pruned_lines(found.pruned), ""]
    if plot_path:
        lines += [f"Pareto front, tokens/s against device memory: [{plot_path}]({plot_path})", ""]
    return lines


def gpu_ranking(found):
    lines = ["## The GPUs ranked by tokens/s per GPU", "", "| GPU | GPUs | best configuration | tokens/s per GPU | "
             "device total GiB |", "| --- | --- | --- | --- | --- |"]
    for f in sorted(found, key=lambda f: -(f.outcomes[0].figures.tokens_per_s if f.outcomes else 0)):
        if f.outcomes:
            best = f.outcomes[0]
            lines.append(f"| {f.gpu.name} | {f.world[1]} | `{best.config.label}` | {best.figures.tokens_per_s:,.0f} | "
                         f"{_gib(best.figures.device_mib)}{' †' * _cached(best, f.budget_mib)} |")
        else:
            lines.append(f"| {f.gpu.name} | – | nothing fits | – | – |")
    cached = any(f.outcomes and _cached(f.outcomes[0], f.budget_mib) for f in found)
    return lines + [""] + ([CACHED_NOTE, ""] if cached else [])


def lines(found, cfg, given, seconds):
    """(the answer's markdown lines, with the plots drawn; 0 if something fits anywhere, else 1)."""
    plots_dir = Path(given.plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    out = [f"# make tune: {cfg.model}, T={cfg.seq}", ""]
    if len(found) > 1:
        out += gpu_ranking(found)
    for f in found:
        path = plots_dir / f"{given.plotsprefix}tune_{f.gpu.key}.png" if f.outcomes else None
        out += section(f, cfg, plot(f, path) if path else None)
    out += [f"Planned in {seconds:,.0f} s on this machine.", ""]
    return out, 0 if any(f.outcomes for f in found) else 1


def cpu_table(predicted, pruned, seconds):
    """The CPU's ranking (VERIFY on a CPU): predicted on its roofline, never measured."""
    out = [f"Predicted on this CPU's roofline (its measured rates; utils/plan/cpu.py), not measured, in "
           f"{seconds:,.0f} s: {len(predicted)} configurations, the whole batch as one micro-batch.", "",
           "| rank | configuration | predicted ms | tokens/s |", "| --- | --- | --- | --- |"]
    out += [f"| {i + 1} | `{c.label}` | {ms:,.2f} | {tokens:,.0f} |"
            for i, (c, ms, tokens) in enumerate(predicted[:TOP])]
    return out + ["", "Left out, by reason:", *pruned_lines(pruned), ""]


def emit(out, given, status):
    """Print the answer and write it to TUNE_REPORT; returns `status`."""
    text = "\n".join(out) + "\n"
    print(text, end="")
    Path(given.tune_report).write_text(text)
    print(f"tune: wrote {given.tune_report}" + (f" and the plots in {given.plots_dir}/" if not given.verify else ""))
    return status
