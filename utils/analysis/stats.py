"""Statistics over results.csv rows: bootstrap CIs of step times and of speedups.

Repeats of a technique are separate processes, and steps within one process are not
independent (they share its memory layout, clocks, neighbours), so the bootstrap has two
levels: resample the runs, then the steps within each resampled run (a hierarchical
bootstrap). With one run it is the ordinary bootstrap over steps, which sees the noise from
step to step but not the variation between processes: such a CI is flagged (`one_run`).

A speedup's CI comes from the ratio of two independent bootstrap distributions; where it
holds 1.0 the difference is not detectable. The A/A technique (AA_CHECK, the baseline under
another name) measures how far two identical configurations differ here, the noise floor; a
speedup whose CI reaches into 1 ± floor is "within the noise floor", not shown either.
"""
import numpy as np
import pandas as pd

from utils.catalog import AA_CHECK, BASELINE
from utils.results import WHAT_RAN

RESAMPLES = 2000
CONFIDENCE = 0.95
MIN_RUNS = 3  # a bootstrap over fewer runs cannot see how much runs differ; adaptive repeats need this many


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


def verdict(low, high, floor=0.0):
    """A speedup CI's meaning: shown only where the whole CI lies beyond the band 1 / (1 + floor) to 1 + floor
    (a ratio's distance from 1 is the same either way: 1.25x and 0.8x are both 25% off)."""
    if low > 1.0 + floor:
        return "faster"
    if high < 1.0 / (1.0 + floor):
        return "slower"
    return "no detectable difference" if low <= 1.0 <= high else "within the noise floor"


def _off(ratio):
    """How far a ratio lies from 1, either way: 1.25 and 0.8 are both 0.25."""
    return max(ratio, 1.0 / ratio) - 1.0


def noise_floor(speedup, low, high):
    """The A/A speedup [CI] as a floor: (its distance from 1, and the CI of that distance)."""
    ends = sorted(_off(v) for v in (low, high))
    return _off(speedup), 0.0 if low <= 1.0 <= high else ends[0], ends[1]


def _scaler_skipped(df):
    return df["scaler_skipped"].isin([True, "True"])  # blank in files older than the column


def measured(df):
    """Measured steps that did the work: a step fp16's GradScaler skipped did no update, so
    its (shorter) time would be a speedup made of skips; it is counted apart instead."""
    return df[(df["status"] == "ok") & (df["phase"] == "measured") & ~_scaler_skipped(df) & ~predicted(df)]


def predicted(df):
    """Rows `make plan` predicted (no device ran them): never step-time statistics."""
    return df["kind"] == "predicted" if "kind" in df else pd.Series(False, index=df.index)


def micro_batch_ms(rows, column="step_ms"):
    """Each step's time (or a part's, `column`) per BATCH x SEQ tokens: over the micro-batches it accumulated."""
    return rows[column] / rows["accum"].fillna(1)


def runs_of(df, technique, per_micro_batch=False, column="step_ms"):
    """Step times (ms; or a part's, `column`, where recorded) of each run of `technique`; per_micro_batch divides
    each by its accum, giving the time per BATCH x SEQ tokens, which is what a speedup compares."""
    rows = measured(df).dropna(subset=[column])
    rows = rows[rows["technique"] == technique]
    return [(micro_batch_ms(group, column) if per_micro_batch else group[column]).to_numpy()
            for _, group in rows.groupby("run_id", sort=False)]


def _memory_mib(rows):
    """The technique's comparable peak memory and which it is: CUDA's peak allocated where
    recorded, else the tracked step's tensor peak (MemTracker). A CPU's peak RSS is mostly
    the Python process, not the technique, so it is never the figure compared."""
    for column in ("peak_alloc_mib", "mem_peak_mib"):
        if rows[column].notna().any():
            return rows[column].max(), column
    return np.nan, ""


def run_statuses(rows):
    """The statuses of the runs in `rows`: one ("ok", "oom") or each with its count ("ok×2, oom×1"); and the
    failed ones among them ("1 of 3 runs oom"; "" where none failed)."""
    counts = rows.drop_duplicates("run_id")["status"].value_counts()
    text = counts.index[0] if len(counts) == 1 else ", ".join(f"{s}×{n}" for s, n in counts.items())
    return text, ", ".join(f"{n} of {counts.sum()} runs {what}" for what, n in counts.items() if what != "ok")


def final_over_runs(rows, column):
    """The mean over runs of each run's last `column` (rows in the order they were made): a diverged run's nan
    stays nan (groupby's last would skip it), and makes the mean nan, so one diverged repeat is never hidden."""
    return rows.groupby("run_id", sort=False)[column].nth(-1).mean(skipna=False)


def censored_median(values, reached):
    """The median over every run of `values` (a time to a target), a run that never reached it counted as slower
    than any that did: NaN unless more than half of the runs reached it (the middle run did not)."""
    if not len(values):
        return np.nan
    middle = np.median(np.where(np.asarray(reached, dtype=bool), np.asarray(values, dtype=float), np.inf))
    return float(middle) if np.isfinite(middle) else np.nan


# the summary's columns, there (blank) even where no technique of the configuration ran
SUMMARY_COLUMNS = [
    "status", "failures", "reason", "runs", "measured_runs", "one_run", *WHAT_RAN, "scaler_skipped",
    "wall_tokens_per_s", "steps",
    "median_ms", "median_lo", "median_hi", "mean_ms", "mean_lo", "mean_hi", "tokens_per_s", "tflops", "mfu",
    "peak_alloc_mib", "peak_reserved_mib", "peak_rss_mib", "memory_mib", "memory_kind", "memory_saved_mib",
    "final_loss", "warmup_s",
    "forward_ms", "backward_ms", "optimizer_ms", "speedup", "speedup_lo", "speedup_hi", "verdict",
]


def summary(df):
    """One row per technique of one configuration: times with CIs, throughput, MFU, memory,
    speedup vs baseline with CI and verdict (against the noise floor where an A/A run is
    there), final loss, status. Sorted: baseline, then fastest first, then techniques that
    did not run."""
    rows = []
    base_runs = runs_of(df, BASELINE, per_micro_batch=True)
    for technique, group in df.groupby("technique", sort=False):
        last = group.iloc[-1]
        runs = runs_of(group, technique)
        status, failures = run_statuses(group)
        row = {"technique": technique, "status": status, "failures": failures,
               "reason": last["reason"] if last["status"] != "ok" else "",
               "runs": group["run_id"].nunique(), "measured_runs": len(runs)}
        for column in WHAT_RAN:
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
            row["peak_rss_mib"] = ok["peak_rss_mib"].max()
            row["final_loss"] = final_over_runs(ok, "loss")
            warm = group[(group["status"] == "ok") & (group["phase"] == "warmup")]
            row["warmup_s"] = warm.groupby("run_id")["step_ms"].sum().median() / 1e3 if len(warm) else np.nan
            for phase in ("forward_ms", "backward_ms", "optimizer_ms"):
                row[phase] = ok[phase].median()
            # a CI resting on one process (this technique's or the baseline's) sees no run-to-run variation
            row["one_run"] = any(len(r) == 1 for r in ([runs, base_runs] if base_runs else [runs]))
            if base_runs:
                token_runs = runs_of(group, technique, per_micro_batch=True)
                row["speedup"], row["speedup_lo"], row["speedup_hi"] = ratio(base_runs, token_runs)
        ran = group[(group["status"] == "ok") & (group["phase"] == "measured")]
        row["scaler_skipped"] = int(_scaler_skipped(ran).sum())
        rows.append(row)
    table = pd.DataFrame(rows, columns=["technique", *SUMMARY_COLUMNS]).set_index("technique")
    if BASELINE in table.index:
        table["memory_saved_mib"] = table.loc[BASELINE, "memory_mib"] - table["memory_mib"]
    floor = (aa_floor(table) or [0.0])[0]
    compared = table[table["speedup"].notna()]
    special = {BASELINE: "baseline", AA_CHECK: "A/A check"}
    verdicts = {t: special.get(t) or verdict(lo, hi, floor)
                for t, lo, hi in zip(compared.index, compared["speedup_lo"], compared["speedup_hi"])}
    table["verdict"] = pd.Series(verdicts, index=table.index, dtype=object)
    # fastest first by tokens/s, not step time: with accum a step holds more tokens
    tokens = table["tokens_per_s"].fillna(0)
    order = sorted(table.index, key=lambda t: (t != BASELINE, table.loc[t, "status"] != "ok", -tokens[t]))
    return table.loc[order]


def every_run_ok(table):
    """Per technique of a summary: measured, and every run of it finished ok. Where some repeats failed (an oom
    in one of four) its figures are of the survivors alone, so it is neither a column's best nor recommended."""
    return (table["status"] == "ok") & table["median_ms"].notna()


def shown_faster(table):
    """Per technique of a summary: shown faster than the baseline, the one rule of the report's bold speedup and
    of its fastest recommendations: the verdict faster, across runs (not one_run), every run ok."""
    across_runs = table["one_run"] != True  # noqa: E712 - blank is not True
    return every_run_ok(table) & (table["verdict"] == "faster") & across_runs


def aa_floor(table):
    """The noise floor from the A/A technique's speedup in a summary: (floor, CI low, CI high),
    or None where the configuration has no A/A run against a baseline."""
    if AA_CHECK not in table.index or table.loc[AA_CHECK, ["speedup", "speedup_lo", "speedup_hi"]].isna().any():
        return None
    return noise_floor(*table.loc[AA_CHECK, ["speedup", "speedup_lo", "speedup_hi"]])


def time_differences(df, a, b, column="step_ms"):
    """Time per BATCH x SEQ tokens (a step's, or a part's `column`, over its accumulated micro-batches) of a minus
    b, paired by run (the k-th run of each) and step: the coin-flip optimizer study's time-difference data, as a
    Series indexed by (run, step)."""
    rows = measured(df).copy()
    rows["run"] = rows.groupby("technique", sort=False)["run_id"].transform(lambda ids: pd.factorize(ids)[0])
    rows["micro_batch_ms"] = micro_batch_ms(rows, column)
    by_step = [rows[rows["technique"] == name].groupby(["run", "step"])["micro_batch_ms"].mean() for name in (a, b)]
    joined = pd.concat(by_step, axis=1, keys=["a", "b"]).dropna()
    return joined["a"] - joined["b"]
