"""Which rows are compared together: a configuration (device, model, shape, data, processes), and within it each
technique's runs at the settings of its newest (a run at another learning rate, accumulation, clipping, adapter,
compile mode or scope, or chunked-logits mode is a row of its own, named for what differs).

Job: group results.csv rows for the statistics, the report and the plots (the package's imports apply).
"""

from collections import Counter

import pandas as pd

# what must match for a comparison: a run on 2 ranks is never compared as if it were on 1
CONFIG = ["device", "model", "layers", "batch", "seq", "data", "parallel", "world_size"]
# what a technique's runs must share to be pooled in one row: one run again at another LR, accumulation, clipping,
# adapter or compile choice is another experiment (the newest setting's row is the technique's, each other a row
# of its own)
POOLED_ALIKE = ["lr", "accum", "grad_clip", "adapter", "compile_mode", "compile_scope", "chunk_logits"]
# of them, what changes a step's time and memory (the learning rate changes neither): a plan is compared with runs
# alike in these
STEP_ALIKE = [column for column in POOLED_ALIKE if column != "lr"]
NOT_RUNS = ("predicted", "maxbatch")  # phases of rows that are answers about runs, not runs


def with_world(rows):
    """`rows` with one process's blank parallel columns filled: files older than them ran one process."""
    return rows.assign(parallel=rows["parallel"].astype(object).fillna("none"),
                       world_size=rows["world_size"].fillna(1).astype(int))


def alike(rows, row, columns):
    """Which of `rows` have `row`'s values in `columns`, a blank matching a blank."""
    same = pd.Series(True, index=rows.index)
    for column in columns:
        value = row[column]
        same &= rows[column].isna() if pd.isna(value) else rows[column] == value
    return same


def newest_alike(rows):
    """`rows` with each technique's runs pooled only with runs at the settings of its newest (POOLED_ALIKE): runs
    at other settings become a row of their own, named for what differs (`sgd (lr=0.1)`), and a note says so."""
    every = rows.drop_duplicates("run_id").sort_values("timestamp_utc")
    named = {}  # run id -> (technique, the name of its own row)
    for technique, runs in every.groupby("technique", sort=False):
        ok = runs[runs["status"] == "ok"]
        newest = (ok if len(ok) else runs).iloc[-1]
        for _, run in runs.iterrows():  # a run that failed: by the settings it got to record (blank: not reached)
            known = [c for c in POOLED_ALIKE if run["status"] == "ok" or not pd.isna(run[c])]
            differ = [c for c in known if not (run[c] == newest[c] or pd.isna(run[c]) and pd.isna(newest[c]))]
            if differ:
                named[run["run_id"]] = technique, f"{technique} ({', '.join(f'{c}={_shown(run[c])}' for c in differ)})"
    notes = [f"{technique}: {count} run(s) at other settings than its newest, shown apart as `{label}`"
             for (technique, label), count in Counter(named.values()).items()]
    own = [named[run][1] if run in named else name for run, name in zip(rows["run_id"], rows["technique"])]
    return rows.assign(technique=own), notes


def _shown(value):
    """A setting as a row's name shows it: a number at its shortest (0.1, 4), a blank as blank."""
    return "blank" if pd.isna(value) else f"{value:g}" if isinstance(value, float | int) else str(value)


def configurations(df, device_filter=""):
    """[(description, rows, notes)] per configuration, newest first, each technique's runs at its newest
    settings (newest_alike, the notes); device_filter: a substring of the device name (case-insensitive)
    that keeps only matching devices."""
    df = with_world(df)
    if device_filter:
        df = df[df["device"].str.contains(device_filter, case=False, regex=False, na=False)]
    df = df[~df["phase"].isin(NOT_RUNS)]  # make plan / maxbatch answers: the report's memory section
    number = df.groupby(CONFIG, sort=False, dropna=False).ngroup()  # a blank field (an older file's) is a value too
    newest = df.groupby(number)["timestamp_utc"].max().sort_values(ascending=False)
    out = []
    for key in newest.index:
        rows = df[number == key]
        device, model, layers, batch, seq, data, kind, world_size = rows.iloc[0][CONFIG]
        depth = f" · {int(layers)} layers" if layers == layers and layers else ""  # a float where a row has none
        ranks = f" · {kind} on {world_size} processes, B per rank" if kind != "none" else ""
        out.append((f"{device} · {model}{depth} · B={batch} T={seq} · {data}{ranks}", *newest_alike(rows)))
    return out
