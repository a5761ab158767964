"""results.csv: the schema (in one place), atomic appends, validated reads.

The file is append-only. A run's rows are written in one locked write() at its end, so a
run killed part-way adds nothing, two runs appending at once never interleave, and rows
already in the file are never rewritten. A file whose header is not ours, or whose rows
do not parse, is refused as it stands.
"""

import csv
import fcntl
import io
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from utils import checks

# column -> what it holds (README's column reference is checked against this by a test)
COLUMNS = {
    "run_id": "one id per script run; every row of the run carries it",
    "timestamp_utc": "when the run started (ISO 8601, UTC)",
    "technique": "the script that ran (baseline, bf16, ...)",
    "repeat": "which repeat of the technique this run was (0, 1, ... with REPEATS=N)",
    "status": "ok, skipped, oom or error",
    "reason": "why, for any status but ok",
    "phase": "the run's phase: warmup or measured, or eval for an evaluation on held-out data; "
    "blank on a status-only row (skipped / oom / error)",
    "step": "step index within its phase, from 0",
    "step_ms": "time of one optimizer step (all its parts) in ms: CUDA events on GPU, perf_counter on CPU",
    "forward_ms": "part of the step: forward pass and loss, ms (summed over micro-batches; blank under CUDA graphs)",
    "backward_ms": "part of the step: backward pass, ms (summed over micro-batches; blank under CUDA graphs)",
    "optimizer_ms": "part of the step: optimizer step and zero_grad, ms (blank under CUDA graphs)",
    "tokens_per_s": "batch x seq x accum x world_size / step time (every rank's tokens; the slowest rank's time)",
    "device_tokens_per_s": "tokens_per_s per device: tokens_per_s / world_size",
    "wall_tokens_per_s": "the phase's tokens / its wall-clock from first step to final sync "
    "(gaps, data, host included); same on every row of the phase",
    "tflops": "model TFLOP/s achieved: flops_per_token x tokens_per_s",
    "mfu": "model FLOPs utilisation: tflops / peak_tflops (blank where the peak is unknown)",
    "loss": "training loss of that step (mean over its micro-batches)",
    "scaler_skipped": "fp16's GradScaler skipped this step's update (inf/nan gradients); False without a scaler",
    "peak_alloc_mib": "CUDA only: peak memory held by tensors during the phase, MiB",
    "peak_reserved_mib": "CUDA only: peak memory reserved by PyTorch's caching allocator during the phase, MiB",
    "peak_rss_mib": "the process's peak resident set size so far (host memory), MiB",
    "model": "model preset (tiny, small, gpt2, ...)",
    "n_params": "parameters in the model (tied embedding counted once)",
    "flops_per_token": "model FLOPs per token for forward + backward: 6N + 12 x layers x width x seq (PaLM appendix B)",
    "peak_tflops": "dense peak TFLOP/s of the device at this dtype (datasheet table or PEAK_TFLOPS); blank if unknown",
    "batch": "sequences per step",
    "seq": "tokens per sequence",
    "data": "coinflip, fixed (one batch reused) or the text file read",
    "accum": "micro-batches of batch sequences per optimizer step (gradient accumulation; 1 without)",
    "dtype": "compute precision that ran: fp32, tf32, bf16-autocast or fp16-autocast",
    "mlp": "MLP of the blocks: gelu, swiglu or geglu",
    "attention": "attention kernel that ran: manual, sdpa:flash, sdpa:efficient, sdpa:cudnn, sdpa:math or flash_attn",
    "optimizer": "optimizer class that ran (module.Class)",
    "fused": "whether the optimizer step ran as fused kernels",
    "compiled": "whether the model ran under torch.compile",
    "compile_mode": "torch.compile mode (default, reduce-overhead, max-autotune, max-autotune-no-cudagraphs); "
    "blank if not compiled",
    "cuda_graphs": "whether the whole step was captured once as a CUDA graph and replayed",
    "checkpointing": "whether each block's activations were recomputed in backward",
    "lr": "learning rate the optimizer ran with",
    "seed": "seed for weights and data",
    "parallel": "none, ddp or fsdp (make ddp / make fsdp: torchrun, one process per device)",
    "world_size": "processes training together (1 without torchrun); runs of another world size are not compared",
    "backend": "torch.distributed backend: nccl on GPUs, gloo on CPUs; blank for one process",
    "device": "GPU name, or CPU model with thread count",
    "driver": "NVIDIA driver version (blank on CPU)",
    "cuda": "CUDA version torch was built with (blank for a CPU build)",
    "torch": "torch version",
    "git_sha": "commit of this suite that ran (+dirty if it had local changes)",
    "host": "machine name",
    # does it still learn (evaluation rows, phase=eval; blank on training rows)
    "layers": "layers (blocks) of the model: LAYERS, or the preset's",
    "loss_floor": "entropy (rate) of the data, the lowest loss any model can reach, nats; blank where unknown (files)",
    "train_steps": "eval rows: training steps taken before this evaluation (warm-up included)",
    "train_s": "eval rows: training wall-clock before this evaluation, s (warm-up included, evaluations excluded)",
    "train_loss": "eval rows: mean training loss over the steps since the previous evaluation",
    "val_loss": "eval rows: mean loss on the run's EVAL_BATCHES held-out batches, nats",
    "val_ppl": "eval rows: validation perplexity, exp(val_loss)",
    "eval_ms": "eval rows: time the evaluation took, ms (never part of step_ms or train_s)",
    # issue 8: memory. Older files lack these columns and still read (blank = a measured row)
    "kind": "measured (a run on this device) or predicted (make plan: fake tensors, no device; never in step-time "
    "statistics)",
    "mem_params_mib": "memory breakdown at the peak of one extra untimed step under MemTracker (predicted rows: "
    "the planned step's): parameters and buffers, MiB",
    "mem_grads_mib": "breakdown: gradients, MiB",
    "mem_optimizer_mib": "breakdown: optimizer state (8-bit states at their real size; with the step's scratch "
    "when the peak falls in the optimizer step), MiB",
    "mem_activations_mib": "breakdown: activations saved for backward (and their recomputation), MiB",
    "mem_temporaries_mib": "breakdown: temporaries (backward's activation gradients, optimizer scratch), MiB",
    "mem_peak_mib": "the tracked step's peak, MiB (the breakdown sums to it); predicted rows: the predicted CUDA "
    "peak allocated",
    "alloc_retries": "CUDA: the caching allocator's num_alloc_retries so far in the run (cache flushed and retried: "
    "slow steps); blank on CPU",
    "alloc_ooms": "CUDA: the caching allocator's num_ooms so far in the run; blank on CPU",
}
HEADER = ",".join(COLUMNS) + "\n"
STATUSES = ("ok", "skipped", "oom", "error")
# every column is a number but these (read as text) and the booleans: a new column is numeric unless listed
TEXT = (
    "run_id", "timestamp_utc", "technique", "status", "reason", "phase", "model", "data", "dtype", "mlp", "attention",
    "optimizer", "compile_mode", "parallel", "backend", "device", "driver", "cuda", "torch", "git_sha", "host", "kind",
)
BOOLEAN = ("fused", "compiled", "checkpointing", "cuda_graphs", "scaler_skipped")
NUMERIC = tuple(c for c in COLUMNS if c not in TEXT + BOOLEAN)


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
    header = text.split("\n", 1)[0].split(",")
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
    writer.writerows(rows)
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
        header = f.readline().decode("utf-8", "replace").rstrip("\n").split(",")
    if header != [""] and not set(header) <= set(COLUMNS):  # ours, older, cut short or empty: moved
        raise ResultsFileError(f"{path} is not a results file of this suite (its header is "
                               f"{','.join(header)[:60]!r}); it was left unchanged")
    backup = path.with_name(f"{path.name}.{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.bak")
    if backup.exists():
        raise ResultsFileError(f"{backup} exists already; {path} was left unchanged: try again in a second")
    path.rename(backup)
    return backup


def main(argv=None):
    """make init_results / make reset: python -m utils.results init|reset PATH"""
    command, target = argv or sys.argv[1:3]
    try:
        if command == "init":
            init(target)
            print(f"init_results: {target} is ready")
        else:
            moved = reset(target)
            print(f"reset: {target} moved to {moved}" if moved else f"reset: no {target} to back up")
    except checks.BadInput as err:
        print(f"{'init_results' if command == 'init' else 'reset'}: error: {err}", file=sys.stderr)
        return checks.EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
