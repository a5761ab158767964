"""make <technique>, make <a+b+c>, make run T=...: one run is the script itself (or,
for a combination, which has no script, python -m utils.measure.train with its canonical
name), its own output and exit status; with REPEATS > 1 or CI_HALF_WIDTH the runs go through make
all's driver. Light on purpose: it imports no torch before it hands over, and a bad name or
a conflict is refused here, before anything starts.

usage: python -m utils.drivers.one [NAME]   (no NAME: T, else TECHNIQUE)
"""

import difflib
import os
import re
import sys

from utils import checks, registry, settings
from utils.drivers import runner


def nearest(name):
    """The technique a mistyped or longer name most likely means: one of its words (torch_compile: compile,
    flash_attention: flash), else the closest spelling; None where none is near."""
    words = set(re.split(r"[_\-.]", name.lower()))
    return next((known for known in registry.known() if known in words), None) or next(
        iter(difflib.get_close_matches(name, registry.known(), n=1)), None)


def main(name=None):
    try:
        given = settings.read()
    except checks.BadInput as err:
        print(f"{name or 'run'}: error: {err}", file=sys.stderr)
        return checks.EXIT_BAD_INPUT
    if name is not None and not registry.is_technique(name):  # make <name>: a typo reaches here too
        near = nearest(name)
        print(f"make: unknown target or technique {name!r}{f' (did you mean {near}?)' if near else ''} (techniques: "
              f"{' '.join(registry.known())}; a combination is written with '+': flash+lion; see make help)",
              file=sys.stderr)
        return checks.EXIT_BAD_INPUT
    try:
        canonical = registry.check([name])[0] if name else registry.one_chosen(given)  # make run: T or TECHNIQUE
        single = given.repeats == 1 and given.ci_half_width is None
    except checks.BadInput as err:
        print(f"make: {err} (see make help)", file=sys.stderr)
        return checks.EXIT_BAD_INPUT
    written = name or given.t or given.technique
    if canonical != written:
        print(f"{written}: runs as {canonical}", flush=True)
    if single:
        os.execv(sys.executable, runner.command(canonical))
    from utils.drivers import all as repeats  # here, not above: a single run never loads torch twice

    return repeats.main([canonical])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None))
