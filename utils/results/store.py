"""results.csv on disk: atomic appends, validated reads, init and reset (the columns are
utils/results/schema.py's).

The file is append-only. A run's rows are written in one locked write() at its end, so a
run killed part-way adds nothing, two runs appending at once never interleave, and rows
already in the file are never rewritten. A file whose header is not ours, or whose rows
do not parse, is refused as it stands.
"""

import csv
import fcntl
import io
import os
from datetime import datetime, timezone
from pathlib import Path

from utils import checks
from utils.results.schema import BOOLEAN, COLUMNS, HEADER, NUMERIC, STATUSES


class ResultsFileError(checks.BadInput):
    """A results file we must not append to or cannot read."""


def _check_content(path, data, appending):
    """Raise ResultsFileError unless `data` is empty or a well-formed file of ours. A file
    written by an older version (a subset of today's columns) can be read, not appended to."""
    if not data:
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ResultsFileError(
            f"{path} is not a text CSV; it was left unchanged: move it aside or set RESULTS_FILE"
        ) from None
    first = text.split("\n", 1)[0]
    if first.endswith("\r"):  # Python's csv module writes these by default, and spreadsheets on Windows
        raise ResultsFileError(f"{path} has Windows line endings (CRLF), which this suite does not write; it was left "
                               "unchanged: convert it (dos2unix) or set RESULTS_FILE")
    header = first.split(",")
    if header != list(COLUMNS):
        if not set(header) < set(COLUMNS):
            raise ResultsFileError(
                f"{path} has a header that is not this suite's ({','.join(header)[:60]!r}...); "
                "it was left unchanged: move it aside or set RESULTS_FILE"
            )
        if appending:
            missing = " ".join(c for c in COLUMNS if c not in header)
            raise ResultsFileError(
                f"{path} was written by an older version of this suite (no {missing}); "
                "it was left unchanged and still plots and reports: "
                "start a new file with make reset (keeps a backup) or RESULTS_FILE=new.csv"
            )
    if not text.endswith("\n"):
        raise ResultsFileError(
            f"{path} is corrupted: its last line is cut short; it was left unchanged: repair or move it aside"
        )
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if len(row) != len(header):
            raise ResultsFileError(
                f"{path} is corrupted at line {number}: {len(row)} fields, expected {len(header)}; "
                "it was left unchanged: repair or move it aside"
            )


def check_appendable(path):
    """Refuse, before any work is done, a file that append_rows would refuse."""
    path = checks.output_file("RESULTS_FILE", path)
    if path.exists():
        _check_content(path, path.read_bytes(), appending=True)


def format_rows(rows):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS), lineterminator="\n", extrasaction="raise")
    # a blank is a blank: a NaN (a row built from a read one) would be written as the text "nan"
    writer.writerows({k: None if isinstance(v, float) and v != v else v for k, v in row.items()} for row in rows)
    return buffer.getvalue()


def append_rows(path, rows):
    """Append rows (dicts keyed by COLUMNS) in one atomic, locked write."""
    body = format_rows(rows).encode()
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # note: held until close; other writers queue here
        size = os.fstat(fd).st_size
        _check_content(path, os.pread(fd, size, 0), appending=True)
        data = body if size else HEADER.encode() + body
        # with O_APPEND one write() lands whole at the end of the file
        if os.write(fd, data) != len(data):
            raise OSError(f"short write to {path}")
        os.fsync(fd)
    finally:
        os.close(fd)


def init(path):
    """Create the file with its header, or check an existing one; never changes rows."""
    path = Path(path)
    check_appendable(path)
    if not path.exists() or path.stat().st_size == 0:
        append_rows(path, [])


def read(path):
    """The results as a DataFrame with every current column (blank where an older file
    lacks one) and numbers as numbers, after the same checks as an append."""
    import pandas as pd  # imported here: the training scripts never need pandas

    path = Path(path)
    if not path.exists():
        raise ResultsFileError(f"RESULTS_FILE={path} does not exist yet: run a technique first (make baseline)")
    checks.input_file("RESULTS_FILE", path)
    data = path.read_bytes()
    if not data:
        raise ResultsFileError(f"{path} is empty: run a technique first (make baseline)")
    _check_content(path, data, appending=False)
    df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""]).reindex(columns=list(COLUMNS))
    for column in NUMERIC:
        numbers = pd.to_numeric(df[column], errors="coerce")
        written_nan = df[column].astype(str).str.lower().eq("nan")  # a nan loss is a measurement, not damage
        _refuse_first(path, df, column, df[column].notna() & numbers.isna() & ~written_nan, "is not a number")
        df[column] = numbers
    for column in BOOLEAN:
        df[column] = df[column].map({"True": True, "False": False})
    unknown = df["status"].notna() & ~df["status"].isin(STATUSES)
    _refuse_first(path, df, "status", unknown, f"is not one of {', '.join(STATUSES)}")
    return df


def _refuse_first(path, df, column, bad, problem):
    if bad.any():
        index = bad.to_numpy().nonzero()[0][0]
        raise ResultsFileError(f"{path} is corrupted at line {index + 2}: {column} {df[column].iloc[index]!r} "
                               f"{problem}; it was left unchanged: repair or move it aside")


def reset(path):
    """Move the file to PATH.<utc time>.bak (make reset); return the backup's path, or None
    where there was no file. A file that is not this suite's is left where it is."""
    path = Path(path)
    if not path.exists():
        return None
    with checks.input_file("RESULTS_FILE", path).open("rb") as f:
        header = f.readline().decode("utf-8", "replace").rstrip("\r\n").split(",")
    if header != [""] and not set(header) <= set(COLUMNS):  # ours, older, cut short, CRLF or empty: moved
        raise ResultsFileError(f"{path} is not a results file of this suite (its header is "
                               f"{','.join(header)[:60]!r}); it was left unchanged")
    backup = path.with_name(f"{path.name}.{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.bak")
    if backup.exists():
        raise ResultsFileError(f"{backup} exists already; {path} was left unchanged: try again in a second")
    path.rename(backup)
    return backup
