"""Error bands: how far off `make plan_check` found the planner, per figure and kind of plan, so that
`make plan` and `make tune` print each predicted figure with the spread measured for its kind.

plan_check compares the planner with every published or measured GPU figure it can model (the H100
reference table and its levers, the GPT2-XL study, torchtitan, torchtune, this suite's H200 runs);
each comparison is an Observation of one figure of one kind. The band of a (figure, kind) is the
lowest and highest error (predicted / measured - 1) among its observations, with their count: a
spread seen, not a confidence interval. The calibration row (timing.CALIBRATION) is left out; rows
whose miss plan_check explains (the GPT2-XL study's Lion) are kept. The table is printed as a
section of plan_check's output, and read back from docs/plan_check.md, which `make plan_check >
docs/plan_check.md` writes: the bands are as current as that file.
"""

import dataclasses
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "plan_check.md"
HEADING = "### Error bands"
FIGURES = ("allocated", "reserved", "device total", "step time")
MEMORY = FIGURES[:3]
# the kinds of plan, the first that applies naming a plan: what each kind's figures depend on most
KINDS = {
    "host-bound": "forward or backward issued slower by the host than the GPU runs it (small steps)",
    "N GPUs": "FSDP2 or DDP: the collectives planned on a fake process group",
    "adapters": "LoRA or QLoRA: a frozen (or 4-bit) base",
    "CUDA graphs": "the step, or compile's graphs, replayed as CUDA graphs",
    "compiled": "torch.compile: inductor's kernels and buffers",
    "bitsandbytes": "a bitsandbytes optimizer: 8-bit or paged state, a synchronised step",
    "eager": "none of the above",
}


def verdict(error, bar):
    """A table's cell: is `error` within `bar`, either way."""
    return "yes" if abs(error) <= bar else "**no**"


@dataclasses.dataclass(frozen=True)
class Observation:
    figure: str  # one of FIGURES
    kind: str  # one of KINDS
    error: float  # predicted / measured - 1
    row: str  # plan_check's row


@dataclasses.dataclass(frozen=True)
class Band:
    low: float
    high: float
    rows: int

    def text(self, rows=True):
        return f"{self.low:+.0%}…{self.high:+.0%}" + (f" ({self.rows})" if rows else "")


def kind_of(plan, figure):
    """The kind of a plan (utils.plan.planner.Plan with its time) for `figure`; host-bound applies to
    step time only (memory does not depend on the host)."""
    record, time = plan.record, plan.time
    applies = {
        "host-bound": figure == "step time" and "host" in (time.bound.get("forward"), time.bound.get("backward")),
        "N GPUs": time.comm is not None,
        "adapters": bool(record["adapter"]),
        "CUDA graphs": bool(plan.graphed),
        "compiled": record["compiled"],
        "bitsandbytes": record["optimizer"].startswith("bitsandbytes"),
        "eager": True,
    }
    return next(kind for kind in KINDS if applies[kind])


def observe(seen, plan, figure, error, row):
    """Append plan_check's comparison of one figure of `plan` to `seen`."""
    seen.append(Observation(figure, kind_of(plan, figure), error, row))


def step_error(tokens_error):
    """A tokens/s error as the step time's: the step is the tokens over the rate."""
    return 1 / (1 + tokens_error) - 1


def bands(observations):
    """{(figure, kind): Band} over the observations."""
    found = {}
    for o in observations:
        found.setdefault((o.figure, o.kind), []).append(o.error)
    return {key: Band(min(errors), max(errors), len(errors)) for key, errors in found.items()}


def table(observations):
    """The bands as plan_check's markdown section: its lines."""
    found = bands(observations)
    lines = [HEADING, "", "The spread of the errors above (predicted / measured - 1) per figure and kind of plan (the "
             "first kind that applies: " + "; ".join(f"{k}: {v}" for k, v in KINDS.items()) + "), the calibration "
             "row left out. `make plan` and `make tune` print each figure with its kind's band, read from here.",
             "", "| figure | kind | rows | lowest error | highest error |", "| --- | --- | --- | --- | --- |"]
    for figure in FIGURES:
        for kind in KINDS:
            if (figure, kind) in found:
                band = found[figure, kind]
                lines.append(f"| {figure} | {kind} | {band.rows} | {band.low:+.1%} | {band.high:+.1%} |")
    return lines


def read(doc=DOC):
    """{(figure, kind): Band} from plan_check's section of `doc`; {} where it has none."""
    try:
        lines = Path(doc).read_text().splitlines()
    except OSError:
        return {}
    return read_lines(lines[lines.index(HEADING) + 1:]) if HEADING in lines else {}


def read_lines(lines):
    """{(figure, kind): Band} from the lines of plan_check's section (to the next heading)."""
    found = {}
    for line in lines:
        if line.startswith("### "):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 5 and cells[0] in FIGURES and cells[1] in KINDS:
            found[cells[0], cells[1]] = Band(float(cells[3].rstrip("%")) / 100, float(cells[4].rstrip("%")) / 100,
                                             int(cells[2]))
    return found


def band_text(found, figure, kind, rows=True):
    """A figure's band as printed beside it (with its count of rows), or "–" where plan_check has no row of its
    kind."""
    band = found.get((figure, kind))
    return band.text(rows) if band else "–"


def memory_text(found, kind):
    """The band of a kind's memory: allocated's, else the first memory figure plan_check has for the kind (named)."""
    figure = next((f for f in MEMORY if (f, kind) in found), None)
    if figure is None:
        return "–"
    return ("" if figure == "allocated" else f"{figure} ") + found[figure, kind].text(rows=False)
