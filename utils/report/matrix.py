"""The matrix report (make matrix): a row per cell in the shape of the tables users make by
hand (a mark per factor, the optimizer, memory, speed, max batch), then each factor's main
effect and each pair's interaction, with CIs where there were repeats."""

import math

from utils.analysis import matrix
from utils.report.memory import fits_in
from utils.units import MIB_PER_GIB


def _unit(table):
    """(name, MiB per unit): GiB, or MiB where every peak is below one GiB."""
    return ("GiB", MIB_PER_GIB) if table["memory_mib"].max() >= MIB_PER_GIB else ("MiB", 1)


def _num(value, spec):
    return "–" if value is None or value != value else format(value, spec)


def _ci(point, low, high, spec, scale=1.0):
    text = _num(point / scale, spec)
    return text if low != low else f"{text} [{low / scale:{spec}}, {high / scale:{spec}}]"


def _has(table, column):
    return column in table and table[column].notna().any()


def _fits(row, capacity_gib):
    """A planned cell's device total against the GPU's memory: "yes", "no", or "–" where it has none."""
    return {None: "–", True: "yes", False: "**no**"}[fits_in(row["device_total_mib"], capacity_gib)]


def _cells(table, factors, planned, capacity_gib):
    unit, per = _unit(table)
    kind = " (predicted)" if planned else ""
    cuda = [c for c in ("reserved_mib", "device_total_mib") if _has(table, c)]
    names = {"reserved_mib": f"peak reserved {unit}{kind}", "device_total_mib": f"device total {unit}{kind}"}
    memory = f"peak allocated {unit}{kind}" if planned or cuda else f"peak memory {unit}"
    fits = capacity_gib is not None and "device_total_mib" in cuda
    header = ["cell", *factors, "optimizer", memory, *(names[c] for c in cuda), *(["fits"] * fits),
              f"step ms{kind}", f"it/s{kind}", f"tokens/s{kind}", "max batch", "runs"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in table.iterrows():
        cell = row["cell"]
        step = row["step_ms"]
        marks = ("✓" if on else "" for on in cell.on)
        figures = [_num(row[c] / per, ".2f") for c in ("memory_mib", *cuda)] + [_fits(row, capacity_gib)] * fits
        speed = [_num(step, ".2f"), _num(1e3 / step if step == step else math.nan, ".2f"),
                 _num(row["tokens_per_s"], ",.0f")]
        lines.append("| " + " | ".join([f"`{cell.name}`", *marks, cell.optimizer, *figures,
                                         *speed, _num(row["max_batch"], "d"), str(row["runs"])]) + " |")
    return "\n".join(lines)


FIGURE_NAMES = {"memory_mib": "peak memory", "device_total_mib": "device total", "step_ms": "step time"}


def _without_figures(table, metrics):
    """Lines naming, per metric, the cells without a figure that leave the effects needing them blank."""
    missing = {metric: matrix.without_figure(table, metric) for metric in metrics}
    if not any(missing.values()):
        return []
    return ["", "An effect that needs a cell without a figure is not computed (–): the other cells alone would "
            "compare on and off over different settings of the other factors.", "",
            *(f"- no {FIGURE_NAMES[metric]}: " + ", ".join(f"`{name}` ({why})" for name, why in cells)
              for metric, cells in missing.items() if cells)]


def _effects(table, factors, planned):
    memory, memory_pairs = matrix.effects(table, factors, "memory_mib")
    step, step_pairs = matrix.effects(table, factors, "step_ms")
    total = matrix.effects(table, factors, "device_total_mib")[0] if _has(table, "device_total_mib") else None
    unit, per = _unit(table)
    extra = f" Δ device total {unit} [95% CI] |" if total else ""
    kind = " (predicted)" if planned else ""
    lines = [f"| switched on | Δ peak allocated {unit} [95% CI] |{extra} Δ step time ms{kind} [95% CI] |",
             "|---|---|---|" + "---|" * bool(total)]
    lines += [f"| `{name}` | {_ci(*memory[name], '+.2f', per)} |"
              + (f" {_ci(*total[name], '+.2f', per)} |" if total else "") + f" {_ci(*step[name], '+.2f')} |"
              for name in memory]
    lines += _without_figures(table, ["memory_mib", *(["device_total_mib"] * bool(total)), "step_ms"])
    if not memory_pairs:
        return "\n".join(lines)
    lines += ["", "Interactions: the effect of the first of a pair with the second off, with it on, and the "
              "difference (0: they add up; negative: together they save more than apart).", "",
              f"| pair | Δ memory {unit}, second off / on | difference | Δ step ms, second off / on | difference |",
              "|---|---|---|---|---|"]
    for (f, g), ((off, on), low, high) in memory_pairs.items():
        (s_off, s_on), s_low, s_high = step_pairs[f, g]
        lines.append(f"| `{f}` × `{g}` | {_num(off / per, '+.2f')} / {_num(on / per, '+.2f')} | "
                     f"{_ci(on - off, low, high, '+.2f', per)} | {_num(s_off, '+.2f')} / {_num(s_on, '+.2f')} | "
                     f"{_ci(s_on - s_off, s_low, s_high, '+.2f')} |")
    return "\n".join(lines)


def markdown(table, factors, base, cfg, where, planned, capacity_gib=None):
    """MATRIX_REPORT's text; `capacity_gib`: the planned GPU's memory, which a cell's device total fits or not."""
    on_top = "+".join(base) or "the baseline"
    kind = ("predicted on fake tensors (`make plan`): the allocated peak, the caching allocator's reserved "
            "peak replayed, and the device total (reserved + CUDA context: what nvidia-smi would show; fits: "
            f"within the GPU's {capacity_gib:g} GiB); the step time a roofline over the planned step's ops "
            "(utils/plan/timing.py; its measured error: docs/plan_check.md), never a measurement"
            if planned else "measured on this device; memory is the peak allocated on CUDA, the "
            "tracked tensor peak (MemTracker) on a CPU")
    return (f"# Matrix: {on_top} × {{{', '.join(factors) or 'no factor'}}} × optimizers\n\n"
            f"{cfg.model} ({cfg.layers} layers) · B={cfg.batch} T={cfg.seq} · {where} · {kind}.\n\n"
            f"{_cells(table, factors, planned, capacity_gib)}\n\n## Main effects\n\nThe mean change when a factor is "
            "switched on, over every setting of the others (an optimizer: against the first listed).\n\n"
            f"{_effects(table, factors, planned)}\n")
