"""The technique registry: the techniques' table (utils/catalog.py) and combinations of them.

`scripts/<name>.py` is the technique `name`, standalone, as its row in the table declares it
(a test holds each to its row). A combination is written with `+` (`bf16+checkpointing+lion`):
the baseline plus each part's own calls, applied in the stages' order whatever order they are
written in. Its canonical name sorts the parts by stage, drops a part another already brings
(`bf16+flash` is `flash`: flash brings bf16 autocast), and is a technique's name where its row
declares it equals the same combination (`stack` is flash+fused+compile), so one configuration
has one name in results.csv. Conflicts are refused before anything runs.

Stdlib only: make help, make <combination> and the checks before a run read it without torch.
"""

import ast
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from utils import checks
from utils.catalog import BASELINE, BY_NAME, CONFLICTS, FUNCTIONS, STAGES, TECHNIQUES

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def known():
    """Every technique, baseline first, then by name (the Makefile derives the same list from the
    scripts folder; a test holds the two equal)."""
    return sorted(sorted(t.name for t in TECHNIQUES), key=lambda name: name != BASELINE)


def script(name):
    return SCRIPTS / f"{name}.py"


def summary(name):
    """The first line of the script's docstring, after its 'name:' (what make help prints)."""
    doc = ast.get_docstring(ast.parse(script(name).read_text())) or ""
    first = doc.splitlines()[0] if doc else ""
    return first.split(":", 1)[1].strip() if first.startswith(f"{name}:") else first


def load_setup(name):
    """The script's setup(run) function, loaded without running the script."""
    check_scripts([name])
    spec = importlib.util.spec_from_file_location(f"technique_{name}", script(name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.setup


def calls_of(name):
    """The technique calls of `name`, in its script's order, from its row."""
    return BY_NAME[name].calls


def own_calls(name):
    """What the technique adds to the baseline: its calls that the baseline does not make."""
    return tuple(c for c in calls_of(name) if c not in calls_of(BASELINE))


def _alias_parts(name):
    return BY_NAME[name].equals or None


def check_scripts(names, what="technique"):
    """Refuse an empty list or a name with no script, in one line naming the known ones."""
    unknown = [name for name in names if name not in BY_NAME]
    if unknown or not names:
        given = " ".join(unknown) or "(none given)"
        raise checks.BadInput(f"unknown {what} {given}; known: {' '.join(known())}")
    return list(names)


def _defining_stage(name):
    """The stage of the technique's last own call: what it is about. An own call of an earlier
    stage is a prerequisite (flash brings bf16 autocast)."""
    return max(STAGES.index(c.stage) for c in own_calls(name))


def stage_of(name):
    """The stage a technique is about (its last own call's), or None for one that adds nothing."""
    return STAGES[_defining_stage(name)] if own_calls(name) else None


def is_optimizer(name):
    """Whether a technique, or each part of a combination, changes the optimizer alone (lion, 8bit, fused;
    adamw, the baseline's own)."""
    return all(call.stage == "optimizer" for part in name.split("+") for call in own_calls(part))


def _prerequisite(name, call):
    return STAGES.index(call.stage) != _defining_stage(name)


def _parts(text):
    """The atomic parts of a combination: split on '+', scripts checked, aliases expanded."""
    parts = text.split("+")
    if "" in parts:
        raise checks.BadInput(f"{text!r} has an empty part: write parts between single '+' signs, e.g. flash+lion")
    check_scripts(parts, f"technique in {text!r}:")
    brought = {}  # atom -> the part that brought it
    for part in parts:
        if not own_calls(part):
            raise checks.BadInput(f"{part} adds nothing to the baseline, so it cannot be part of a combination "
                                  f"({text!r})")
        for atom in _alias_parts(part) or (part,):
            if atom in brought:
                by = {brought[atom], part} - {atom}
                said = f"{by.pop()} already includes {atom}" if by else f"{atom} is named twice"
                raise checks.BadInput(f"{said} in {text!r}: name each technique once")
            brought[atom] = part
    return list(brought)


def _chosen_calls(text, atoms):
    """Every own call of the atoms, where a group holds one choice: a part's own choice wins
    over another part's prerequisite (fp16+flash runs fp16); two choices conflict."""
    entries = [(atom, call) for atom in atoms for call in own_calls(atom)]
    chosen = []
    for atom, call in entries:
        group = FUNCTIONS[call.function][1]
        rivals = [(a, c) for a, c in entries if group and FUNCTIONS[c.function][1] == group and c != call]
        if any(not _prerequisite(a, c) for a, c in rivals) and _prerequisite(atom, call):
            continue  # overruled: another part chose this group itself
        clash = next(((a, c) for a, c in rivals if _prerequisite(a, c) == _prerequisite(atom, call)), None)
        if clash:
            raise checks.BadInput(f"{clash[0]} and {atom} each choose the {group} ({clash[1].function}, "
                                  f"{call.function}) in {text!r}: a run has one")
        chosen.append(call)
    functions = {c.function: atom for atom, c in entries if c in chosen}
    for pair, why in CONFLICTS.items():
        if pair <= functions.keys():
            raise checks.BadInput(f"{' and '.join(sorted(functions[f] for f in pair))} in {text!r}: {why}")
    return list(dict.fromkeys(chosen))


def _folded(atoms):
    """The atoms with a named combination's parts replaced by its name, first (stack_memory+accum)."""
    for alias in sorted((n for n in known() if _alias_parts(n)), key=lambda n: -len(_alias_parts(n))):
        if set(_alias_parts(alias)) <= set(atoms):
            return [alias, *(a for a in atoms if a not in _alias_parts(alias))]
    return atoms


@dataclass(frozen=True)
class Combination:
    name: str  # canonical: a script's name, or its parts by stage joined with '+' (a named combination first)
    parts: tuple  # the atomic techniques, by stage
    calls: tuple  # every call, baseline's first within each stage, in stage order

    @property
    def is_script(self):
        return "+" not in self.name


def combination(text):
    """`text` (a technique or a '+' combination) checked and made canonical; raises BadInput."""
    if "+" not in text:
        check_scripts([text])
        return Combination(text, (text,), calls_of(text))
    atoms = _parts(text)
    chosen = _chosen_calls(text, atoms)
    # a part whose own lines another part already brings adds nothing: bf16+flash is flash
    kept = [a for a in atoms if not any(b != a and set(own_calls(a)) < set(own_calls(b)) for b in atoms)]
    kept.sort(key=lambda a: (_defining_stage(a), a))
    name = "+".join(_folded(kept))
    if "+" not in name:
        return combination(name)
    groups = {FUNCTIONS[c.function][1] for c in chosen} - {None}
    base = [c for c in calls_of(BASELINE) if FUNCTIONS[c.function][1] not in groups]  # lion replaces AdamW
    # by stage, and within one in FUNCTIONS' order (the optimizer before its step in backward), whatever the
    # order the parts were named in
    order = list(FUNCTIONS)
    calls = sorted([*base, *chosen], key=lambda c: (STAGES.index(c.stage), order.index(c.function)))
    return Combination(name, tuple(kept), tuple(calls))


def is_technique(name):
    """Whether `name` is a technique or a '+' combination (the drivers load configs by their own names)."""
    return "+" in name or name in BY_NAME


def functions_of(name):
    """The technique functions a technique or combination calls (raises BadInput)."""
    return {call.function for call in combination(name).calls}


def check(names, what="technique"):
    """Each name a technique or a combination: their canonical names (raises BadInput)."""
    if not names:
        check_scripts([], what)
    return [combination(name).name if "+" in name else check_scripts([name], what)[0] for name in names]


def selected(techniques):
    """TECHNIQUES (`techniques`), checked: the techniques a command over several runs covers (none: all)."""
    return check(list(techniques) or known())


def one_chosen(given):
    """The technique of a target that takes one (make profile, lrsweep, ddp, fsdp, scaling_gpus), checked:
    T where given (make run's), else TECHNIQUE (`given`: utils.settings.Settings)."""
    if given.t and "TECHNIQUE" in given.given and given.t != given.technique:
        raise checks.BadInput(f"T={given.t} and TECHNIQUE={given.technique} name two techniques; give one")
    return check([given.t or given.technique], "T" if given.t else "TECHNIQUE")[0]


def chosen(given):
    """The techniques of a target over several (make all, plan, maxbatch), checked: TECHNIQUES, else T's
    one where given, else every technique."""
    if given.t and given.techniques:
        raise checks.BadInput("T and TECHNIQUES are both given: T names one technique, TECHNIQUES a list; give one")
    return selected(given.techniques or ([given.t] if given.t else []))
