"""What every technique script runs: config -> model -> the script's setup -> measuring
loop -> rows appended to results.csv -> a one-line summary. A combination, which has no
script, runs the same way by name: python -m utils.measure.train flash+lion.

Exit status: 0 ok or skipped, 1 error, 2 bad input, 3 out of memory, 130 interrupted.
Nothing is written for bad input or an interrupted run; skipped / oom / error runs append
one status row saying why, so results.csv shows what did not run as well as what did.
"""

import inspect
import json
import signal
import statistics
import sys
import traceback
from pathlib import Path

import torch

from utils import checks, devices, results, settings
from utils.measure import config, data, env, loop, memory, parallel, preflight
from utils.measure.evaluate import Evaluator
from utils.techniques.combined import setup_of
from utils.techniques.run import Skip, new_run, parallelize

EXIT_ERROR, EXIT_BAD_INPUT, EXIT_OOM, EXIT_INTERRUPTED = 1, 2, 3, 130


def _first_line(err):
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


# what an out-of-memory says where it is not a torch.OutOfMemoryError: CUDA's own, the host
# allocator's, and cuBLAS's when it cannot allocate its workspace (a RuntimeError)
OOM_MESSAGES = ("out of memory", "can't allocate memory", "cublas_status_alloc_failed")


def _is_oom(err):
    return isinstance(err, torch.OutOfMemoryError) or any(text in str(err).lower() for text in OOM_MESSAGES)


def _significant(value):
    # rates keep 6 significant digits: to a fixed decimal, a slow step's (a loaded CPU's) would lose its precision
    return float(f"{value:.6g}")


def _mib(value):
    return None if value is None else round(value, 1)


def _ms(value):
    return None if value is None else round(value, 4)


def _step_rows(base, phase, tokens_per_step):
    flops, peak = base["flops_per_token"], base["peak_tflops"]
    wall_tokens_per_s = _significant(tokens_per_step * len(phase.step_ms) / (phase.wall_ms / 1e3))
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
            "tokens_per_s": _significant(tokens_per_s),
            "device_tokens_per_s": _significant(tokens_per_s / base["world_size"]),
            "wall_tokens_per_s": wall_tokens_per_s,
            "tflops": _significant(tflops),
            "mfu": _significant(tflops / peak) if peak else None,
            "loss": round(phase.loss[step], 6),
            "scaler_skipped": phase.skipped[step],
            "peak_alloc_mib": _mib(phase.peak_alloc_mib),
            "peak_reserved_mib": _mib(phase.peak_reserved_mib),
            "device_total_mib": _mib(phase.device_total_mib),
            "peak_rss_mib": _mib(phase.peak_rss_mib),
        }


def _eval_rows(base, records):
    for i, record in enumerate(records):
        yield {
            **base,
            "status": "ok",
            "phase": "eval",
            "step": i,
            "train_steps": record["train_steps"],
            "train_s": round(record["train_s"], 4),
            "train_loss": None if record["train_loss"] is None else round(record["train_loss"], 6),
            "val_loss": round(record["val_loss"], 6),
            "val_ppl": round(record["val_ppl"], 4),
            "eval_ms": round(record["eval_ms"], 3),
        }


def summarize_eval(cfg, records):
    """', val loss a -> b' and, with TARGET_LOSS, when it was reached."""
    if not records:
        return ""
    text = f", val loss {records[0]['val_loss']:.3f} -> {records[-1]['val_loss']:.3f}"
    if cfg.target_loss is not None:
        hit = next((r for r in records if r["val_loss"] <= cfg.target_loss), None)
        target = f"TARGET_LOSS {cfg.target_loss:g}"
        text += (
            f" ({target} reached at step {hit['train_steps']}, {hit['train_s']:.2f} s of training)"
            if hit
            else f" ({target} not reached in {records[-1]['train_steps']} steps)"
        )
    return text


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


ONE_PROCESS = parallel.World()


def _report(status, line, world=ONE_PROCESS, run_id=None):
    """Print the run's one-line outcome; `make all` and `make ddp` also collect it through
    SUMMARY_FILE (under torchrun one file per rank, SUMMARY_FILE.<rank>): read as text, as it
    must reach the driver even when the other settings are refused."""
    if world.kind and status not in ("ok", "skipped"):
        line = f"{line} (rank {world.rank})"
    if world.rank == 0 or status not in ("ok", "skipped"):
        print(line, file=sys.stdout if status in ("ok", "skipped") else sys.stderr, flush=True)
    if summary := settings.text("SUMMARY_FILE"):
        path = summary + (f".{world.rank}" if world.kind else "")
        try:
            Path(path).write_text(json.dumps({"status": status, "line": line, "run_id": run_id}))
        except OSError:  # a SUMMARY_FILE refused before training says so in `line`; a driver misses its summary
            pass


def build_run(cfg, setup):
    """The seeded model on its device with the technique applied (raises Skip if it can't)."""
    run = new_run(cfg, cfg.device)
    setup(run)
    parallelize(run)  # under torchrun, if no later stage did already
    run.accum *= cfg.reference_ranks  # the loss check's one process: each rank's micro-batches, accumulated
    return run


def _train(cfg, setup, base):
    """Build and train the run, filling `base` with what ran; returns (accum, warm-up Phase,
    measured Phase, evaluation records). The run is freed on return: under torchrun the model
    (DDP's reducer, FSDP2's hooks) must go before its process group, or a rank can hang."""
    early = preflight.shapes_only(cfg)
    if early is not None:  # an impossible run is refused before its model takes memory
        preflight.check(early, cfg)
    run = build_run(cfg, setup)
    if early is None:  # a file's model: refused once built, before it trains
        preflight.check(run.model, cfg)
    base["n_params"] = run.model.num_params()
    base["flops_per_token"] = run.flops_per_token(cfg.seq)
    base.update(run.record(), attention=loop.attention_kernel(run))
    base["peak_tflops"] = devices.peak_tflops(base["device"], run.dtype, override=cfg.peak_tflops)
    evaluator = None
    if cfg.eval_every:
        held_out = data.validation_batches(cfg, cfg.eval_batches)
        evaluator = Evaluator(run, held_out, cfg.eval_every, cfg.warmup + cfg.steps)
    batches = data.batches(cfg)
    warm, measured = loop.measure(run, batches, cfg.steps, cfg.warmup, evaluator)
    warm, measured = parallel.combine(warm, cfg.world), parallel.combine(measured, cfg.world)
    # allocator health of the run so far, then one more step, untimed, under MemTracker: on
    # every rank under FSDP2 (its collectives need them all; rank 0's breakdown is written),
    # not under DDP (its buckets were allocated at construction, out of the tracker's sight)
    base.update(memory.allocator_health(cfg.device), kind="measured")
    if cfg.world.kind != "ddp":
        base.update(memory.tracked_step(run, batches))
    return run.accum, warm, measured, evaluator.records if evaluator else []


def _announce(name, cfg, device):
    world = cfg.world
    print(
        f"{name}: {cfg.model} on {device}, B={cfg.batch} T={cfg.seq}, {cfg.warmup} warm-up + {cfg.steps} measured "
        "steps" + (f" on {world.size} ranks ({world.kind}, {world.backend})" if world.kind else "")
        + f" -> {cfg.results_file}",
        flush=True,
    )


def main(setup, name=None, argv=None):
    """Run one technique: `setup(run)` applies it (see utils/techniques/)."""
    name = name or Path(inspect.getfile(setup)).stem
    try:
        cfg = config.load(name, settings.read(argv=sys.argv[1:] if argv is None else argv, prog=f"scripts/{name}.py"))
    except config.ConfigError as err:
        _report("error", f"{name}: error: {err}")
        sys.exit(EXIT_BAD_INPUT)

    world = cfg.world
    base = results.identity(cfg, name, env.capture(cfg.device, world.local_rank), loss_floor=data.floor(cfg.data))
    if world.kind:
        # torchrun stops the other ranks with SIGTERM when one fails: leave as interrupted, writing nothing
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    if world.rank == 0:
        _announce(name, cfg, base["device"])

    def record_status(status, reason, exit_code):
        # under torchrun rank 0 writes; a failed rank writes nothing: the launcher says which failed
        wrote = world.rank == 0 and (status == "skipped" or not world.kind)
        if wrote:
            results.append_rows(cfg.results_file, [{**base, "status": status, "reason": reason}])
        _report(status, f"{name}: {status}: {reason}", world, base["run_id"] if wrote else None)
        if status == "skipped":  # every rank skips alike; a failed rank's peers are stopped by torchrun
            parallel.stop(world)
        sys.exit(exit_code)

    try:
        parallel.start(world)
        accum, warm, measured, records = _train(cfg, setup, base)
    except Skip as why:
        record_status("skipped", str(why), 0)
    except checks.BadInput as err:  # the preflight: nothing trained, nothing written
        _report("error", f"{name}: error: {err}", world)
        sys.exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        _report("error", f"{name}: interrupted; nothing was written to {cfg.results_file}", world)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as err:  # noqa: BLE001 - any failure becomes a status row, then exits non-zero
        if _is_oom(err):
            record_status("oom", f"out of memory at B={cfg.batch} T={cfg.seq}: {_first_line(err)}", EXIT_OOM)
        traceback.print_exc()
        record_status("error", f"{type(err).__name__}: {_first_line(err)}", EXIT_ERROR)

    tokens_per_step = cfg.batch * cfg.seq * accum * world.size  # every rank's tokens
    parallel.stop(world)
    if world.rank != 0:
        _report("ok", f"{name}: ok", world)
        return
    rows = [*(_step_rows(base, warm, tokens_per_step) if warm else []), *_step_rows(base, measured, tokens_per_step)]
    rows += _eval_rows(base, records)
    try:
        results.append_rows(cfg.results_file, rows)
    except results.ResultsFileError as err:
        _report("error", f"{name}: error: {err}")
        sys.exit(EXIT_BAD_INPUT)
    _report("ok", summarize(name, cfg, tokens_per_step, warm, measured) + summarize_eval(cfg, records), world,
            base["run_id"])


def run_by_name(name, argv):
    """python -m utils.measure.train NAME [--flags]: a technique or a '+' combination by name."""
    try:
        canonical, setup = setup_of(name)
    except checks.BadInput as err:
        _report("error", f"{name}: error: {err}")
        sys.exit(EXIT_BAD_INPUT)
    main(setup, name=canonical, argv=argv)


if __name__ == "__main__":
    run_by_name(sys.argv[1], sys.argv[2:])
