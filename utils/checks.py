"""Bad input, checked in one place: numbers in range, and paths that can be read or written.

Every check raises BadInput with one line that names the variable, the value and what is
wrong; the commands print it and exit with EXIT_BAD_INPUT before anything is trained or
written. Standard library only, so report, plots and `make reset` use it without torch.
"""

import functools
import hashlib
import math
import os
import re
import sys
import tempfile
from pathlib import Path

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C
PREFIX_MAX_CHARS = 100  # room for a configuration slug and a plot name within 255-byte file names


class BadInput(ValueError):
    """Bad input: reported as one line, exit status EXIT_BAD_INPUT."""


def command(name, *also):
    """A command's main, wrapped once: bad input (BadInput, or one of `also`) is printed as
    `name: error: ...` in one line, exit EXIT_BAD_INPUT; Ctrl-C as one line, exit
    EXIT_INTERRUPTED; never a traceback for either."""

    def wrap(main):
        @functools.wraps(main)
        def run(*args, **kwargs):
            try:
                return main(*args, **kwargs)
            except (BadInput, *also) as err:
                print(f"{name}: error: {err}", file=sys.stderr)
                return EXIT_BAD_INPUT
            except KeyboardInterrupt:
                print(f"{name}: interrupted", file=sys.stderr)
                return EXIT_INTERRUPTED

        return run

    return wrap


def integer(name, text, minimum=1, maximum=None):
    try:
        value = int(text)
    except (TypeError, ValueError):
        value = None
    if value is None or value < minimum or (maximum is not None and value > maximum):
        if maximum is not None:
            kind = f"an integer from {minimum} to {maximum}"
        else:
            kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise BadInput(f"{name} must be {kind}, got {text!r}")
    return value


def number(name, text, below=math.inf):
    """A finite number > 0 (and < `below`)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not 0 < value < below or not math.isfinite(value):
        kind = "a positive number" if below == math.inf else f"a number between 0 and {below:g}"
        raise BadInput(f"{name} must be {kind}, got {text!r}")
    return value


def probability(name, text):
    """A number from 0 up to 1 (1 excluded): a dropout rate."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not 0 <= value < 1:
        raise BadInput(f"{name} must be a number from 0 up to 1, got {text!r}")
    return value


def optional(check, name, text, *args):
    """`check` of a variable that may be left empty (None then)."""
    return None if text in (None, "") else check(name, text, *args)


def _probe_writable(name, path, folder):
    # os.access says yes to root on a read-only mount; creating a file is the real test
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise BadInput(f"{name}={path}: cannot write in folder {folder} ({err.strerror})") from None


def input_file(name, path):
    path = Path(path)
    if path.is_dir():
        raise BadInput(f"{name}={path} is a folder, not a file")
    if not path.is_file():
        raise BadInput(f"{name}={path}: no such file")
    try:
        with open(path, "rb"):
            pass
    except OSError as err:
        raise BadInput(f"{name}={path} cannot be read ({err.strerror})") from None
    return path


def output_file(name, path, results_file=None):
    """A file we may create or append to: not a folder, in an existing folder we can write in, and not
    `results_file` (a report written over it would lose every row)."""
    if str(path) == "":
        raise BadInput(f"{name} is empty: give a file name")
    path = Path(path)
    if results_file is not None and path.resolve() == Path(results_file).resolve():
        raise BadInput(f"{name}={path} is RESULTS_FILE: writing it would replace the results; give another file")
    if path.is_dir():
        raise BadInput(f"{name}={path} is a folder, not a file")
    if path.exists() and not path.is_file():
        raise BadInput(f"{name}={path} is not a regular file")
    folder = path.parent
    if not folder.is_dir():
        raise BadInput(f"{name}={path}: folder {folder} does not exist")
    if path.exists():
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND))  # opening to append changes nothing
        except OSError as err:
            raise BadInput(f"{name}={path} cannot be written ({err.strerror})") from None
    else:
        _probe_writable(name, path, folder)
    return path


def output_dir(name, path):
    """A folder we may create (with its parents) and write files in."""
    if str(path) == "":
        raise BadInput(f"{name} is empty: give a folder")
    path = Path(path)
    existing = next(p for p in (path, *path.parents) if p.exists())  # "." or "/" at the latest
    if not existing.is_dir():
        what = "is a file" if existing == path else f"cannot be made: {existing} is a file"
        raise BadInput(f"{name}={path} {what}, not a folder")
    _probe_writable(name, path, existing)
    return path


def file_prefix(name, prefix):
    """A prefix of file names: no folder part (set the folder with PLOTS_DIR)."""
    if "/" in prefix or os.sep in prefix:
        raise BadInput(f"{name}={prefix!r} holds a '/': it prefixes file names; put the folder in PLOTS_DIR")
    if len(prefix) > PREFIX_MAX_CHARS or not prefix.isprintable():
        raise BadInput(
            f"{name}={prefix!r} is not usable in a file name (printable, up to {PREFIX_MAX_CHARS} characters)"
        )
    return prefix


def file_part(text):
    """`text` (a model's name: a preset, hf:org/name, path/to/file.py:build) where a file name has it: each
    run of characters but letters and digits one underscore, lower case; past 60 characters cut to 51 and
    a hash of the whole, so that two long names stay two files."""
    part = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()
    return part if len(part) <= 60 else f"{part[:51]}_{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def below_floor(target, source, floor):
    """The refusal of a target loss under the data's floor, in one line."""
    return (
        f"TARGET_LOSS={target:g} is below the entropy of DATA={source} ({floor:.4f} nats), "
        "the lowest loss any model can reach: it can never be reached"
    )
