"""make <technique>: one run is the script itself (its own output and exit status); with
REPEATS > 1 or PRECISION the runs go through make all's driver. Light on purpose: it imports
no torch before it hands over.

usage: python -m utils.drivers.one NAME
"""

import os
import sys

from utils import checks, registry, settings


def main(name):
    try:
        registry.check([name])
        single = settings.get("REPEATS") == 1 and settings.get("PRECISION") is None
    except checks.BadInput as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        return checks.EXIT_BAD_INPUT
    if single:
        os.execv(sys.executable, [sys.executable, str(registry.script(name))])
    from utils.drivers import all as repeats  # here, not above: a single run never loads torch twice

    return repeats.main([name])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
