"""`make maxbatch`: the largest batch that trains, per technique.

Grow the batch x2 from 1 until a trial fails, then bisect between the last batch that
trained and the first that did not. Measured (the default): each trial is the technique's
own script, STEPS=2 after one warm-up step, in a fresh process, so an out-of-memory error
cannot poison the next trial; its rows go to a scratch file. On a CPU, MAXMEM_GB= caps each
trial process for real (RLIMIT_DATA: every heap and anonymous mapping, so torch's allocator
fails as a GPU's would). With PLAN=1 the planner answers instead, for a GPU of GPU_MEMORY_GB
GiB: a batch fits when its predicted peak allocated plus the headroom below fits.

One row per technique is appended to RESULTS_FILE (phase `maxbatch`, batch = the answer,
kind measured or predicted); 0 means not even B=1 trains.

usage: python -m utils.maxbatch technique ...   (settings from the environment)
"""

import json
import os
import resource
import subprocess
import sys
import tempfile
import uuid
from datetime import datetime, timezone
from pathlib import Path

from utils import config, env, planner, results
from utils.plan import load_config, planned_device
from utils.profile import load_setup
from utils.run_all import SCRIPTS, known_techniques

GIB = 2**30
TRIAL_STEPS = {"STEPS": "2", "WARMUP": "1"}
# PLAN=1 headroom beyond the predicted allocated peak: the CUDA context and cuBLAS workspace
# (outside the allocator's count, ~0.5-1 GiB on an A100 / H100 with CUDA 12), and the caching
# allocator's reserved memory above its allocated peak (segments, fragmentation: ~10% is common)
CONTEXT_GIB = 1.0
RESERVED_OVER_ALLOCATED = 0.10
MAX_BATCH = 2**16  # search ceiling: a batch past this is not a memory question any more


def search(fits, limit=MAX_BATCH):
    """Largest b in [1, limit] with fits(b), assuming fits is monotone: x2 then bisect.
    Returns (answer, [(batch, fits?)...]); answer 0 if fits(1) is False."""
    trials = []

    def trial(b):
        ok = fits(b)
        trials.append((b, ok))
        return ok

    low, high = 0, None  # low trains, high does not
    b = 1
    while b <= limit:
        if not trial(b):
            high = b
            break
        low, b = b, b * 2
    if high is None:
        return low, trials
    while high - low > 1:
        mid = (low + high) // 2
        if trial(mid):
            low = mid
        else:
            high = mid
    return low, trials


def cap(maxmem_gb):
    """preexec_fn for a child process: limit its data segment to maxmem_gb GiB."""
    limit = int(maxmem_gb * GIB)
    return lambda: resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def check_cap(maxmem_gb):
    """Refuse a cap below what Python with torch itself needs to start."""
    proc = subprocess.run([sys.executable, "-c", "import torch"], preexec_fn=cap(maxmem_gb), capture_output=True)
    if proc.returncode != 0:
        raise config.ConfigError(f"MAXMEM_GB={maxmem_gb:g} is below what Python with torch needs to start")


def measured_trial(technique, batch, maxmem_gb):
    """Run the technique at `batch` in a fresh process: True if it trained, False if it ran
    out of memory; anything else (skip, error) raises RuntimeError with its line."""
    with tempfile.TemporaryDirectory() as tmp:
        summary_file = Path(tmp) / "summary.json"
        child_env = {**os.environ, **TRIAL_STEPS, "BATCH": str(batch), "RESULTS_FILE": str(Path(tmp) / "r.csv"),
                     "SUMMARY_FILE": str(summary_file), "REPEATS": "1"}
        proc = subprocess.run([sys.executable, str(SCRIPTS / f"{technique}.py")], env=child_env, capture_output=True,
                              text=True, preexec_fn=cap(maxmem_gb) if maxmem_gb else None)
        summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    if summary.get("status") == "ok":
        return True
    if summary.get("status") == "oom" or "MemoryError" in proc.stderr or "can't allocate memory" in proc.stderr:
        return False
    line = summary.get("line") or (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
    raise RuntimeError(line)


def planned_fits(technique, gpu_memory_gb):
    setup = load_setup(technique)

    def fits(batch):
        cfg = load_config(technique, ["--batch", str(batch)])
        predicted_gib = planner.plan(setup, cfg).peak_mib / 1024
        return predicted_gib * (1 + RESERVED_OVER_ALLOCATED) + CONTEXT_GIB <= gpu_memory_gb

    return fits


def _row(cfg, technique, batch, kind, reason, device):
    return {"run_id": uuid.uuid4().hex[:12], "timestamp_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "technique": technique, "repeat": 0, "status": "ok", "reason": reason, "phase": "maxbatch", "kind": kind,
            "model": cfg.model, "batch": batch, "seq": cfg.seq, "data": cfg.data, "seed": cfg.seed, **device}


def _number(name, text):
    return config.positive_float(name, text) if text else None


def main(names):
    unknown = [n for n in names if n not in known_techniques()]
    if unknown or not names:
        print(f"maxbatch: error: unknown technique {' '.join(unknown) or '(none given)'}; "
              f"known: {' '.join(known_techniques())}", file=sys.stderr)
        return 2
    planned = os.environ.get("PLAN", "") not in ("", "0")
    try:
        gpu_gb = _number("GPU_MEMORY_GB", os.environ.get("GPU_MEMORY_GB", ""))
        maxmem_gb = _number("MAXMEM_GB", os.environ.get("MAXMEM_GB", ""))
        if planned and gpu_gb is None:
            raise config.ConfigError("PLAN=1 needs GPU_MEMORY_GB= (the GPU's memory in GiB, e.g. 40 for an A100 40GB)")
        cfgs = {n: (load_config(n) if planned else config.load(n, argv=[])) for n in names}
        if planned:
            for name, cfg in cfgs.items():
                planner.check_modelled(load_setup(name), cfg)
        elif maxmem_gb:
            check_cap(maxmem_gb)
    except (config.ConfigError, planner.NotModelled) as err:
        print(f"maxbatch: error: {err}", file=sys.stderr)
        return 2
    if planned:
        device = planned_device()
        where = (f"a {gpu_gb:g} GiB GPU (planned: predicted peak x {1 + RESERVED_OVER_ALLOCATED:g} for reserved "
                 f"over allocated, + {CONTEXT_GIB:g} GiB CUDA context and workspace)")
    else:
        device = env.capture(next(iter(cfgs.values())).device)
        where = f"{device['device']}" + (f" capped at MAXMEM_GB={maxmem_gb:g}" if maxmem_gb else "")
    rows, status = [], 0
    for name, cfg in cfgs.items():
        fits = planned_fits(name, gpu_gb) if planned else (lambda b, n=name: measured_trial(n, b, maxmem_gb))
        try:
            best, trials = search(fits)
        except RuntimeError as err:
            print(f"maxbatch: {name}: cannot search: {err}", file=sys.stderr)
            status = 1
            continue
        tried = ", ".join(f"{b}{'' if ok else ' x'}" for b, ok in trials)
        line = f"{cfg.model} T={cfg.seq} with {name}: largest batch B={best} on {where}"
        print(f"maxbatch: {line} (trials: {tried})", flush=True)
        rows.append(_row(cfg, name, best, "predicted" if planned else "measured", line, device))
    if rows:
        try:
            results.append_rows(next(iter(cfgs.values())).results_file, rows)
        except results.ResultsFileError as err:
            print(f"maxbatch: error: {err}", file=sys.stderr)
            return 2
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
