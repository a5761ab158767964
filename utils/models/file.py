"""A model from a file: MODEL=path/to/file.py:build, where build(seq) returns an nn.Module
whose forward(idx, targets) returns the loss, (logits, loss) or a Hugging Face output with
.loss. The file is imported once per process, with its own folder on the import path (so it
may import its neighbours); what goes wrong says so in one line (checks.BadInput).
"""

import functools
import hashlib
import importlib.util
import sys
from pathlib import Path

import torch.nn as nn

from utils import checks

CONTRACT = ("build(seq) must return an nn.Module whose forward(idx, targets) returns the loss (a scalar tensor), "
            "(logits, loss), or a Hugging Face output with .loss")


def first_line(err):
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:200]}" if text else type(err).__name__


@functools.cache
def load(path, function, name):
    """The function `function` of the file at `path` (imported once)."""
    path = Path(path).resolve()
    module_name = f"suite_model_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    # registered as an import would be: torch.compile's guards find the model's module by its name
    sys.modules[module_name] = module
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # noqa: BLE001 - the user's file: whatever it raises, said in one line
        del sys.modules[module_name]
        raise checks.BadInput(f"MODEL={name}: importing {path.name} raised {first_line(err)}") from None
    finally:
        sys.path.remove(str(path.parent))
    found = getattr(module, function, None)
    if not callable(found):
        defined = sorted(n for n, v in vars(module).items() if callable(v) and getattr(v, "__module__", "") ==
                         module_name)
        what = "has no function" if found is None else "has a non-callable"
        raise checks.BadInput(f"MODEL={name}: {path.name} {what} {function!r} (it defines: "
                              f"{', '.join(defined) or 'none'}); {CONTRACT}")
    return found


def build_module(spec, seq):
    """build(seq) of the file, checked to be an nn.Module."""
    build = load(spec.source, spec.function, spec.name)
    try:
        module = build(seq)
    except Exception as err:  # noqa: BLE001 - the user's build
        raise checks.BadInput(f"MODEL={spec.name}: {spec.function}({seq}) raised {first_line(err)}") from None
    if not isinstance(module, nn.Module):
        raise checks.BadInput(f"MODEL={spec.name}: {spec.function}({seq}) returned {type(module).__name__}; "
                              f"{CONTRACT}")
    return module
