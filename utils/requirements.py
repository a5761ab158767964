"""Does this interpreter have what the suite needs? Checked before every make target when
PYTHON= names an interpreter of the user's (a GPU box's python3 with its own CUDA torch), where
no .venv is built from requirements.txt: the packages that file pins, read from it, each found
or named as missing in one line, exit 2, before anything runs.

Which packages a target cannot do without is this module's table; a package that only some
techniques use (bitsandbytes, torchao, transformers) is optional: those techniques are skipped
with the reason. Stdlib only: it runs before anything else is known to import.

usage: python -m utils.requirements [make goal ...]   (default: MAKECMDGOALS, which the Makefile exports)
"""

import importlib.metadata
import importlib.util
import os
import re
import sys
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parents[1] / "requirements.txt"
# the oldest torch whose APIs the suite calls: fp32_precision (the TF32 switch), FSDP2's
# set_force_sum_reduction_for_comms, MemTracker; the suite is tested on requirements.txt's pin
MIN_TORCH = (2, 9)
# packages only some techniques (or a nicety) use: missing, those techniques are skipped with the
# reason (and a run shows no progress bar)
OPTIONAL = {  # the techniques' lists: each row's packages in utils/catalog.py (a test holds them equal)
    "bitsandbytes": "8bit, lion, lion8bit, paged_8bit, stack_memory",
    "torchao": "offload, qlora, torchao_8bit",
    "transformers": "MODEL=hf:...",
    "peft": "lora, qlora",
    "tqdm": "the progress bar of a run in a terminal",
    "pytest-xdist": "make test in two processes",
}
# packages only some make goals use: missing, only those goals are refused
FOR_GOALS = {"pytest": ("test", "test-e2e", "session", "gpu_check"), "ruff": ("lint",)}


def pinned(path=REQUIREMENTS):
    """requirements.txt's package names, in order."""
    names = []
    for line in path.read_text().splitlines():
        match = re.match(r"\s*([A-Za-z0-9_.-]+)\s*[=<>!~]", line.split("#")[0])
        if match:
            names.append(match.group(1))
    return names


def version_tuple(text):
    return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:2])


def problems(goals, find=importlib.util.find_spec, version=importlib.metadata.version):
    """What this interpreter lacks for `goals` (make's goals; none: the default), one phrase each."""
    missing = [name for name in pinned() if name not in OPTIONAL
               and (name not in FOR_GOALS or set(goals) & set(FOR_GOALS[name])) and find(name) is None]
    found = []
    if missing:
        found.append(f"missing {', '.join(missing)} (pip install {' '.join(missing)})")
    if "torch" not in missing:
        torch_version = version("torch")
        if version_tuple(torch_version) < MIN_TORCH:
            found.append(f"torch {torch_version} is older than {'.'.join(map(str, MIN_TORCH))}, the oldest whose "
                         "APIs the suite calls")
    return found


def main(goals):
    found = problems(goals)
    if found:
        print(f"{sys.executable}: {'; '.join(found)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or os.environ.get("MAKECMDGOALS", "").split()))
