"""What every technique script runs: config -> model -> the script's setup -> measuring
loop -> rows appended to results.csv -> a one-line summary.

Exit status: 0 ok or skipped, 1 error, 2 bad input, 3 out of memory, 130 interrupted.
Nothing is written for bad input or an interrupted run; skipped / oom / error runs append
one status row saying why, so results.csv shows what did not run as well as what did.
"""
import inspect
import json
import os
import statistics
import sys
import traceback
import uuid
from datetime import datetime, timezone
from pathlib import Path

import torch

from utils import bench, config, data, env, mfu, results
from utils.model import build_model
from utils.techniques import Run, Skip

EXIT_ERROR, EXIT_BAD_INPUT, EXIT_OOM, EXIT_INTERRUPTED = 1, 2, 3, 130


def _first_line(err):
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def _is_oom(err):
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower() or "can't allocate memory" in str(err)


def _significant(value):
    # rates keep 6 significant digits: to a fixed decimal, a slow step's (a loaded CPU's) would lose its precision
    return float(f"{value:.6g}")


def _mib(value):
    return None if value is None else round(value, 1)


def _step_rows(base, phase, tokens_per_step):
    flops, peak = base["flops_per_token"], base["peak_tflops"]
    for step, ms in enumerate(phase.step_ms):
        tokens_per_s = tokens_per_step / (ms / 1e3)
        tflops = flops * tokens_per_s / 1e12
        yield {
            **base,
            "status": "ok",
            "phase": phase.name,
            "step": step,
            "step_ms": round(ms, 4),
            "forward_ms": round(phase.forward_ms[step], 4),
            "backward_ms": round(phase.backward_ms[step], 4),
            "optimizer_ms": round(phase.optimizer_ms[step], 4),
            "tokens_per_s": _significant(tokens_per_s),
            "tflops": _significant(tflops),
            "mfu": _significant(tflops / peak) if peak else None,
            "loss": round(phase.loss[step], 6),
            "peak_alloc_mib": _mib(phase.peak_alloc_mib),
            "peak_reserved_mib": _mib(phase.peak_reserved_mib),
            "peak_rss_mib": _mib(phase.peak_rss_mib),
        }


def summarize(name, cfg, warm, measured):
    median_ms = statistics.median(measured.step_ms)
    tokens = cfg.batch * cfg.seq / (median_ms / 1e3)
    memory = f"peak {measured.peak_alloc_mib / 1024:.2f} GiB allocated" if measured.peak_alloc_mib is not None else f"peak RSS {measured.peak_rss_mib:.0f} MiB"
    phases = f"fwd/bwd/opt {statistics.median(measured.forward_ms):.1f}/{statistics.median(measured.backward_ms):.1f}/{statistics.median(measured.optimizer_ms):.1f} ms"
    warm_text = f"; warm-up {len(warm.step_ms)} steps {sum(warm.step_ms) / 1e3:.1f} s (excluded)" if warm else ""
    return (
        f"{name}: ok, median {median_ms:.2f} ms/step ({phases}) over {cfg.steps} steps, {tokens / 1e3:.1f}k tokens/s, {memory}, "
        f"loss {measured.loss[0]:.3f} -> {measured.loss[-1]:.3f}{warm_text}"
    )


def _report(status, line, run_id=None):
    """Print the run's one-line outcome; `make all` also collects it, and the run_id of the
    rows written (None: none were), through SUMMARY_FILE."""
    print(line, file=sys.stdout if status in ("ok", "skipped") else sys.stderr, flush=True)
    if os.environ.get("SUMMARY_FILE"):
        Path(os.environ["SUMMARY_FILE"]).write_text(json.dumps({"status": status, "line": line, "run_id": run_id}))


def build_run(cfg, setup):
    """The seeded model on its device with the technique applied (raises Skip if it can't)."""
    torch.manual_seed(cfg.seed)
    run = Run(cfg, build_model(cfg.model, cfg.seq).to(cfg.device))
    setup(run)
    return run


def main(setup, name=None, argv=None):
    """Run one technique: `setup(run)` applies it (see utils/techniques.py)."""
    name = name or Path(inspect.getfile(setup)).stem
    try:
        cfg = config.load(name, argv)
    except config.ConfigError as err:
        _report("error", f"{name}: error: {err}")
        sys.exit(EXIT_BAD_INPUT)

    base = {
        "run_id": uuid.uuid4().hex[:12],
        "timestamp_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "technique": name,
        "repeat": cfg.repeat,
        "model": cfg.model,
        "batch": cfg.batch,
        "seq": cfg.seq,
        "data": cfg.data,
        "seed": cfg.seed,
        **env.capture(cfg.device),
    }
    print(f"{name}: {cfg.model} on {base['device']}, B={cfg.batch} T={cfg.seq}, {cfg.warmup} warm-up + {cfg.steps} measured steps -> {cfg.results_file}", flush=True)

    def record_status(status, reason, exit_code):
        results.append_rows(cfg.results_file, [{**base, "status": status, "reason": reason}])
        _report(status, f"{name}: {status}: {reason}", base["run_id"])
        sys.exit(exit_code)

    try:
        run = build_run(cfg, setup)
        gpt = run.model
        base["n_params"] = gpt.num_params()
        base["flops_per_token"] = mfu.flops_per_token(gpt.num_params() - gpt.wpe.weight.numel(), gpt.config.n_layer, gpt.config.n_embd, cfg.seq)
        base.update(run.record(), attention=bench.attention_kernel(run))
        base["peak_tflops"] = mfu.peak_tflops(base["device"], run.dtype, override=cfg.peak_tflops)
        warm, measured = bench.measure(run, data.batches(cfg), cfg.steps, cfg.warmup)
    except Skip as why:
        record_status("skipped", str(why), 0)
    except KeyboardInterrupt:
        _report("error", f"{name}: interrupted; nothing was written to {cfg.results_file}")
        sys.exit(EXIT_INTERRUPTED)
    except Exception as err:  # noqa: BLE001 - any failure becomes a status row, then exits non-zero
        if _is_oom(err):
            record_status("oom", f"out of memory at B={cfg.batch} T={cfg.seq}: {_first_line(err)}", EXIT_OOM)
        traceback.print_exc()
        record_status("error", f"{type(err).__name__}: {_first_line(err)}", EXIT_ERROR)

    tokens_per_step = cfg.batch * cfg.seq
    rows = [*(_step_rows(base, warm, tokens_per_step) if warm else []), *_step_rows(base, measured, tokens_per_step)]
    try:
        results.append_rows(cfg.results_file, rows)
    except results.ResultsFileError as err:
        _report("error", f"{name}: error: {err}")
        sys.exit(EXIT_BAD_INPUT)
    _report("ok", summarize(name, cfg, warm, measured), base["run_id"])
