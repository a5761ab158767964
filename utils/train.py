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

from utils import bench, config, data, env, memory, mfu, results
from utils.model import build_model
from utils.techniques import Run, Skip

EXIT_ERROR, EXIT_BAD_INPUT, EXIT_OOM, EXIT_INTERRUPTED = 1, 2, 3, 130


def _first_line(err):
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def _is_oom(err):
    return (
        isinstance(err, torch.OutOfMemoryError)
        or "out of memory" in str(err).lower()
        or "can't allocate memory" in str(err)
    )


def _mib(value):
    return None if value is None else round(value, 1)


def _ms(value):
    return None if value is None else round(value, 4)


def _step_rows(base, phase, tokens_per_step):
    flops, peak = base["flops_per_token"], base["peak_tflops"]
    wall_tokens_per_s = round(tokens_per_step * len(phase.step_ms) / (phase.wall_ms / 1e3), 1)
    for step, ms in enumerate(phase.step_ms):
        tokens_per_s = tokens_per_step / (ms / 1e3)
        tflops = flops * tokens_per_s / 1e12
        yield {
            **base,
            "status": "ok",
            "phase": phase.name,
            "step": step,
            "step_ms": round(ms, 4),
            **{f"{part}_ms": _ms(times[step]) for part, times in phase.parts_ms.items()},
            "tokens_per_s": round(tokens_per_s, 1),
            "wall_tokens_per_s": wall_tokens_per_s,
            "tflops": round(tflops, 4),
            "mfu": round(tflops / peak, 5) if peak else None,
            "loss": round(phase.loss[step], 6),
            "scaler_skipped": phase.skipped[step],
            "peak_alloc_mib": _mib(phase.peak_alloc_mib),
            "peak_reserved_mib": _mib(phase.peak_reserved_mib),
            "peak_rss_mib": _mib(phase.peak_rss_mib),
        }


def summarize(name, cfg, tokens_per_step, warm, measured):
    median_ms = statistics.median(measured.step_ms)
    tokens = tokens_per_step / (median_ms / 1e3)
    wall_tokens = tokens_per_step * len(measured.step_ms) / (measured.wall_ms / 1e3)
    if measured.peak_alloc_mib is not None:
        memory = f"peak {measured.peak_alloc_mib / 1024:.2f} GiB allocated"
    else:
        memory = f"peak RSS {measured.peak_rss_mib:.0f} MiB"
    if measured.forward_ms[0] is None:
        parts = "timed whole"
    else:
        parts = "fwd/bwd/opt " + "/".join(f"{statistics.median(t):.1f}" for t in measured.parts_ms.values()) + " ms"
    skipped = sum(measured.skipped)
    skipped_text = f", {skipped} steps skipped by the GradScaler" if skipped else ""
    warm_text = f"; warm-up {len(warm.step_ms)} steps {warm.wall_ms / 1e3:.1f} s (excluded)" if warm else ""
    return (
        f"{name}: ok, median {median_ms:.2f} ms/step ({parts}) over {cfg.steps} steps, {tokens / 1e3:.1f}k tokens/s "
        f"({wall_tokens / 1e3:.1f}k end to end), {memory}, loss {measured.loss[0]:.3f} -> {measured.loss[-1]:.3f}"
        f"{skipped_text}{warm_text}"
    )


def _report(status, line):
    """Print the run's one-line outcome; `make all` also collects it through SUMMARY_FILE."""
    print(line, file=sys.stdout if status in ("ok", "skipped") else sys.stderr, flush=True)
    if os.environ.get("SUMMARY_FILE"):
        Path(os.environ["SUMMARY_FILE"]).write_text(json.dumps({"status": status, "line": line}))


def build_run(cfg, setup):
    """The seeded model on its device with the technique applied (raises Skip if it can't)."""

    def build(mlp="gelu"):
        torch.manual_seed(cfg.seed)  # the same weights whichever technique builds it
        return build_model(cfg.model, cfg.seq, mlp=mlp).to(cfg.device)

    run = Run(cfg, build(), build=build)
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
    print(
        f"{name}: {cfg.model} on {base['device']}, B={cfg.batch} T={cfg.seq}, "
        f"{cfg.warmup} warm-up + {cfg.steps} measured steps -> {cfg.results_file}",
        flush=True,
    )

    def record_status(status, reason, exit_code):
        results.append_rows(cfg.results_file, [{**base, "status": status, "reason": reason}])
        _report(status, f"{name}: {status}: {reason}")
        sys.exit(exit_code)

    try:
        run = build_run(cfg, setup)
        base["n_params"] = run.model.num_params()
        base["flops_per_token"] = run.model.flops_per_token(cfg.seq)
        base.update(run.record(), attention=bench.attention_kernel(run))
        base["peak_tflops"] = mfu.peak_tflops(base["device"], run.dtype, override=cfg.peak_tflops)
        batches = data.batches(cfg)
        warm, measured = bench.measure(run, batches, cfg.steps, cfg.warmup)
        # issue 8: allocator health of the run so far, then one more step, untimed, under MemTracker
        base.update(memory.allocator_health(cfg.device), kind="measured")
        base.update(memory.tracked_step(run, batches))
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

    tokens_per_step = cfg.batch * cfg.seq * run.accum
    rows = [*(_step_rows(base, warm, tokens_per_step) if warm else []), *_step_rows(base, measured, tokens_per_step)]
    try:
        results.append_rows(cfg.results_file, rows)
    except results.ResultsFileError as err:
        _report("error", f"{name}: error: {err}")
        sys.exit(EXIT_BAD_INPUT)
    _report("ok", summarize(name, cfg, tokens_per_step, warm, measured))
