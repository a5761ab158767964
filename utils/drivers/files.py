"""make init_results / reset / clean: the results file and the generated files, by hand.
Stdlib only: make reset and make clean run without the venv.

    init_results  create RESULTS_FILE with its header (an existing one is only checked)
    reset         move RESULTS_FILE to RESULTS_FILE.<utc time>.bak (a file that is not this
                  suite's is refused), then remove the plots and profiles in PLOTS_DIR
    clean         remove the plots and profiles in PLOTS_DIR and the caches; keeps results and .venv
"""

import shutil
import sys
from pathlib import Path

from utils import checks, settings
from utils.results import store

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ("*.png", "*profile_*.txt", "*profile_*.csv")  # what make plots / report / profile write


def plots_dir(given):
    folder = given.plots_dir
    if not folder:
        raise checks.BadInput("PLOTS_DIR is empty: give a folder")
    return folder


def remove_plots(given):
    folder = plots_dir(given)
    for pattern in GENERATED:
        for path in Path(folder).glob(pattern):
            path.unlink()
    return folder


def clean(given):
    folder = remove_plots(given)
    shutil.rmtree(ROOT / ".pytest_cache", ignore_errors=True)
    for cache in ROOT.rglob("__pycache__"):
        if ".venv" not in cache.parts:
            shutil.rmtree(cache, ignore_errors=True)
    return f"clean: removed the plots and profiles in {folder}/ and the caches (results and .venv kept)"


def reset(given):
    target = given.results_file
    plots_dir(given)  # before anything moves
    moved = store.reset(target)
    line = f"reset: {target} moved to {moved}" if moved else f"reset: no {target} to back up"
    return f"{line}\nreset: removed the plots and profiles in {remove_plots(given)}/"


def init(given):
    target = given.results_file
    store.init(target)
    return f"init_results: {target} is ready"


COMMANDS = {"init_results": init, "reset": reset, "clean": clean}


def main(argv=None):
    command = (argv or sys.argv[1:])[0]

    @checks.command(command)
    def run():
        print(COMMANDS[command](settings.read()))
        return 0

    return run()


if __name__ == "__main__":
    sys.exit(main())
