"""The technique registry: the scripts folder is the list. `scripts/<name>.py` is the
technique `name`; baseline comes first, the rest by name. Stdlib only: make help reads it."""

import ast
import importlib.util
from pathlib import Path

from utils import checks, settings

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
BASELINE = "baseline"


def known():
    """Every technique, baseline first, then by name (the Makefile derives the same list)."""
    names = sorted(p.stem for p in SCRIPTS.glob("*.py"))
    return sorted(names, key=lambda name: name != BASELINE)


def script(name):
    return SCRIPTS / f"{name}.py"


def check(names, what="technique"):
    """Refuse an empty list or a name with no script, in one line naming the known ones."""
    unknown = [name for name in names if not script(name).is_file()]
    if unknown or not names:
        given = " ".join(unknown) or "(none given)"
        raise checks.BadInput(f"unknown {what} {given}; known: {' '.join(known())}")
    return list(names)


def summary(name):
    """The first line of the script's docstring, after its 'name:' (what make help prints)."""
    doc = ast.get_docstring(ast.parse(script(name).read_text())) or ""
    first = doc.splitlines()[0] if doc else ""
    return first.split(":", 1)[1].strip() if first.startswith(f"{name}:") else first


def load_setup(name):
    """The script's setup(run) function, loaded without running the script."""
    check([name])
    spec = importlib.util.spec_from_file_location(f"technique_{name}", script(name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.setup


def selected():
    """TECHNIQUES, checked: the techniques a command over several runs covers (blank: all)."""
    return check(settings.get("TECHNIQUES") or known())
