"""Statistics over results.csv rows: bootstrap CIs of step times and of speedups.

Repeats of a technique are separate processes, and steps within one process are not
independent (they share its memory layout, clocks, neighbours), so the bootstrap has two
levels: resample the runs, then the steps within each resampled run (a hierarchical
bootstrap). With one run it is the ordinary bootstrap over steps. A speedup's CI comes from
the ratio of two independent bootstrap distributions; where it holds 1.0 the difference is
not detectable and is reported as such, not as a speedup.
"""
import numpy as np
import pandas as pd

RESAMPLES = 2000
CONFIDENCE = 0.95
BASELINE = "baseline"


def bootstrap(runs, statistic=np.mean, resamples=RESAMPLES, seed=0):
    """Bootstrap distribution of `statistic` (np.mean, np.median) over step times given as
    one array per run: each resample draws runs with replacement, then steps within each."""
    runs = [np.asarray(r, dtype=float) for r in runs if len(r)]
    rng = np.random.default_rng(seed)
    k = len(runs)
    if len({len(r) for r in runs}) == 1:  # the usual case, same STEPS: vectorised
        data = np.stack(runs)  # (runs, steps)
        picked = rng.integers(k, size=(resamples, k, 1))
        steps = rng.integers(data.shape[1], size=(resamples, k, data.shape[1]))
        return statistic(data[picked, steps].reshape(resamples, -1), axis=1)
    out = np.empty(resamples)
    for b in range(resamples):
        picked = rng.integers(k, size=k)
        out[b] = statistic(np.concatenate([rng.choice(runs[i], size=len(runs[i])) for i in picked]))
    return out


def interval(distribution):
    tail = (1 - CONFIDENCE) / 2 * 100
    return tuple(np.percentile(distribution, [tail, 100 - tail]))


def ratio(runs_a, runs_b, seed=0):
    """Mean step time of a over b: (point estimate, CI low, CI high)."""
    point = np.concatenate(runs_a).mean() / np.concatenate(runs_b).mean()
    draws = bootstrap(runs_a, seed=seed) / bootstrap(runs_b, seed=seed + 1)
    return (point, *interval(draws))


def verdict(low, high):
    if low <= 1.0 <= high:
        return "no detectable difference"
    return "faster" if low > 1.0 else "slower"


CONFIG = ["device", "model", "batch", "seq", "data"]  # what must match for a comparison
NOT_RUNS = ("predicted", "maxbatch")  # phases of rows that are answers about runs, not runs


def configurations(df, device_filter=""):
    """[(description, rows)] per configuration, newest first; device_filter: a substring of
    the device name (case-insensitive) that keeps only matching devices."""
    if device_filter:
        df = df[df["device"].str.contains(device_filter, case=False, regex=False)]
    df = df[~df["phase"].isin(NOT_RUNS)]  # make plan / maxbatch answers: the report's memory section
    newest = df.groupby(CONFIG, sort=False)["timestamp_utc"].max().sort_values(ascending=False)
    out = []
    for key in newest.index:
        same = (df[CONFIG] == pd.Series(key, index=CONFIG)).all(axis=1)
        device, model, batch, seq, data = key
        out.append((f"{device} · {model} · B={batch} T={seq} · {data}", df[same]))
    return out


def _scaler_skipped(df):
    return df["scaler_skipped"].isin([True, "True"])  # blank in files older than the column


def measured(df):
    """Measured steps that did the work: a step fp16's GradScaler skipped did no update, so
    its (shorter) time would be a speedup made of skips; it is counted apart instead."""
    return df[(df["status"] == "ok") & (df["phase"] == "measured") & ~_scaler_skipped(df) & ~predicted(df)]


def predicted(df):
    """Rows `make plan` predicted (no device ran them): never step-time statistics."""
    return df["kind"] == "predicted" if "kind" in df else pd.Series(False, index=df.index)


def runs_of(df, technique, per_micro_batch=False):
    """Step times (ms) of each run of `technique`; per_micro_batch divides each by its
    accum, giving the time per BATCH x SEQ tokens, which is what a speedup compares."""
    rows = measured(df)
    rows = rows[rows["technique"] == technique]
    return [
        (group["step_ms"] / (group["accum"].fillna(1) if per_micro_batch else 1)).to_numpy()
        for _, group in rows.groupby("run_id", sort=False)
    ]


def _memory_mib(rows):
    """Peak memory of the technique: CUDA allocated where recorded, else process RSS."""
    for column in ("peak_alloc_mib", "peak_rss_mib"):
        if rows[column].notna().any():
            return rows[column].max(), column
    return np.nan, ""


def summary(df):
    """One row per technique of one configuration: times with CIs, throughput, MFU, memory,
    speedup vs baseline with CI, final loss, status. Sorted: baseline, then fastest first,
    then techniques that did not run."""
    rows = []
    base_runs = runs_of(df, BASELINE, per_micro_batch=True)
    for technique, group in df.groupby("technique", sort=False):
        last = group.iloc[-1]
        runs = runs_of(group, technique)
        statuses = group.drop_duplicates("run_id")["status"].value_counts()
        status = statuses.index[0] if len(statuses) == 1 else ", ".join(f"{s}×{n}" for s, n in statuses.items())
        row = {"technique": technique, "status": status, "reason": last["reason"] if last["status"] != "ok" else "", "runs": group["run_id"].nunique()}
        for column in ("dtype", "attention", "optimizer", "fused", "compiled", "checkpointing",
                       "mlp", "compile_mode", "accum", "cuda_graphs"):
            row[column] = last[column]
        if runs:
            ok = measured(group)
            steps = np.concatenate(runs)
            row.update(steps=len(steps), median_ms=np.median(steps), mean_ms=steps.mean())
            row["median_lo"], row["median_hi"] = interval(bootstrap(runs, np.median))
            row["mean_lo"], row["mean_hi"] = interval(bootstrap(runs))
            row["tokens_per_s"] = ok["tokens_per_s"].median()
            row["wall_tokens_per_s"] = ok.groupby("run_id")["wall_tokens_per_s"].first().median()
            row["tflops"] = ok["tflops"].median()
            row["mfu"] = ok["mfu"].median()
            row["peak_alloc_mib"] = ok["peak_alloc_mib"].max()
            row["peak_reserved_mib"] = ok["peak_reserved_mib"].max()
            row["memory_mib"], row["memory_kind"] = _memory_mib(ok)
            row["final_loss"] = ok.groupby("run_id")["loss"].last().mean()
            warm = group[(group["status"] == "ok") & (group["phase"] == "warmup")]
            row["warmup_s"] = warm.groupby("run_id")["step_ms"].sum().median() / 1e3 if len(warm) else np.nan
            for phase in ("forward_ms", "backward_ms", "optimizer_ms"):
                row[phase] = ok[phase].median()
            if base_runs:
                token_runs = runs_of(group, technique, per_micro_batch=True)
                row["speedup"], row["speedup_lo"], row["speedup_hi"] = ratio(base_runs, token_runs)
                row["verdict"] = "baseline" if technique == BASELINE else verdict(row["speedup_lo"], row["speedup_hi"])
        ran = group[(group["status"] == "ok") & (group["phase"] == "measured")]
        row["scaler_skipped"] = int(_scaler_skipped(ran).sum())
        rows.append(row)
    table = pd.DataFrame(rows).set_index("technique")
    if BASELINE in table.index and "memory_mib" in table:
        table["memory_saved_mib"] = table.loc[BASELINE, "memory_mib"] - table["memory_mib"]
    # fastest first by tokens/s, not step time: with accum a step holds more tokens
    order = sorted(
        table.index,
        key=lambda t: (t != BASELINE, table.loc[t, "status"] != "ok", -table.loc[t].get("tokens_per_s", 0)),
    )
    return table.loc[order]


def time_differences(df, a, b):
    """Step time of a minus b, paired by (repeat, step): seed 000's time-difference data, as a
    Series indexed by (repeat, step)."""
    rows = measured(df)
    by_step = [rows[rows["technique"] == name].groupby(["repeat", "step"])["step_ms"].mean() for name in (a, b)]
    joined = pd.concat(by_step, axis=1, keys=["a", "b"]).dropna()
    return joined["a"] - joined["b"]
