"""Results: the CSV schema (schema.py), the file (store.py: atomic appends, validated typed
reads, reset) and the fields that say which run a row belongs to (rows.py).

Job: everything about results.csv, for writers and readers alike. May import: utils.checks,
pandas (read only); never torch, so a CSV from another machine reads anywhere.
"""

from utils.results.rows import identity
from utils.results.schema import COLUMNS, HEADER, MEMORY_COLUMNS, MEMORY_PARTS, NUMERIC, STATUSES, WHAT_RAN
from utils.results.store import ResultsFileError, append_rows, check_appendable, format_rows, init, read, reset

__all__ = [
    "COLUMNS", "HEADER", "MEMORY_COLUMNS", "MEMORY_PARTS", "NUMERIC", "STATUSES", "ResultsFileError", "append_rows",
    "check_appendable", "format_rows", "identity", "init", "read", "reset", "WHAT_RAN",
]
