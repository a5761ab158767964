"""gpu_check's and finetune_check's Checks as the terminal shows them and as <name>.md keeps
them: per check its verdict, what it checks, and a line per figure with the bar it was held to."""

from utils.drivers.gpu_check.judge import FAIL

COLUMNS = ("subject", "what", "value", "bar", "verdict")


def _cells(result):
    return (result.subject, result.quantity, result.value, result.bar, result.verdict)


def text(check):
    """The check as printed: a heading with its verdict, then an aligned table."""
    table = [COLUMNS, *(_cells(r) for r in check.results)]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS) - 1)]
    lines = [f"({check.key}) {check.title}: {check.summary}", f"    {check.about}"]
    for row in table:
        lines.append("    " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
    return "\n".join(line.rstrip() for line in lines)


def overall(name, checks):
    """One line: every check's verdict, and the exit status it means; `name`: the command's."""
    failed = [c.key for c in checks if c.verdict == FAIL]
    verdicts = ", ".join(f"({c.key}) {c.summary}" for c in checks)
    return f"{name}: {'FAIL in ' + ', '.join(failed) if failed else 'pass'}: {verdicts}"


def _md(cell):
    return str(cell).replace("|", "\\|")


def markdown(name, probe, checks, ran, notes):
    """<name>.md: where and when command `name` ran, each check's table and verdict, the commands
    run. `notes`: lines said under the heading (the shape, the date, a results file moved aside)."""
    capability = ".".join(map(str, probe["capability"]))
    out = [
        f"# {name}: {probe['device']}",
        "",
        f"`make {name}` on {probe['device']} (compute capability {capability}, {probe['gpus']} GPU(s), "
        f"driver {probe['driver'] or 'unknown'}), torch {probe['torch']}, CUDA {probe['cuda'] or 'none'}, "
        f"git {probe['git_sha']}, host {probe['host']}.",
        "",
        *(f"- {note}" for note in notes),
        "",
        f"**{overall(name, checks)}**",
    ]
    for check in checks:
        out += ["", f"## ({check.key}) {check.title}: {check.summary}", "", check.about, "",
                "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        out += ["| " + " | ".join(_md(c) for c in _cells(r)) + " |" for r in check.results]
    out += ["", "## Commands", "", "| command | exit | seconds | log |", "|---|---|---|---|"]
    out += [f"| `{_md(r.command)}` | {r.status} | {r.seconds:.0f} | [{r.log}]({r.log}) |" for r in ran.values()]
    return "\n".join(out) + "\n"
