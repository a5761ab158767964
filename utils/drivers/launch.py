"""`make ddp` / `make fsdp` / `make scaling_gpus`: a technique under torchrun, PyTorch's own
launcher, one process per device (GPUs: NCCL; CPUs: gloo).

    make ddp NPROC=2                     torchrun --standalone --nproc_per_node=2 scripts/baseline.py
    make fsdp NPROC=4 TECHNIQUE=stack    the same with FSDP2
    make scaling_gpus NPROC=4 KIND=ddp   world sizes 1, 2, ... NPROC: tokens/s and efficiency

Several machines: run the same line on each with torchrun's rendezvous instead of --standalone
(see the README): torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d
--rdzv-endpoint=HOST:PORT scripts/<technique>.py, with SUITE_PARALLEL=ddp|fsdp in the environment.

Checked before anything starts: NPROC against the devices, PORT free, the settings. After a
run: which rank failed and why (each rank leaves a one-line summary; a rank that left none
was killed), and, with LOSS_CHECK=1, the loss curve against a single process on the same
sequences (utils/measure/data.py), within LOSS_TOLERANCE: the same global batch of NPROC x BATCH
per step, taken as NPROC micro-batches of BATCH and accumulated, so the reference needs one
rank's memory however many ranks there are.
"""

import math
import os
import socket
import sys
import tempfile
from pathlib import Path

from utils import catalog, checks, models, registry, results, settings
from utils.drivers.runner import run, torchrun
from utils.measure import config
from utils.plots import scaling as scaling_plot
from utils.techniques.parallel import KINDS
from utils.techniques.stages import BF16_WEIGHTS

LOSS_TOLERANCE = 1e-3  # nats per step: reduction order differs across ranks (and FSDP2's bf16 norm weights)


class LaunchError(checks.BadInput):
    """Bad input for a launch: one line, exit 2."""


def max_processes(device):
    """More processes than devices measures contention, not scaling."""
    import torch

    if device == "cuda":
        return torch.cuda.device_count()
    return os.cpu_count() or 1


def check(kind, technique, given):
    """The launch's settings (`given`, parsed), checked before anything starts: (cfg, nproc, port)."""
    if kind not in KINDS:
        raise LaunchError(f"unknown parallel kind {kind!r}; one of {', '.join(KINDS)}")
    cfg = config.load(technique, given)
    nproc, port = given.nproc, given.port
    config.check_technique(technique, cfg.compile_mode, cfg.accum, parallel=kind, grad_clip=cfg.grad_clip)
    limit = max_processes(cfg.device)
    if nproc > limit:
        what = f"{limit} GPU(s)" if cfg.device == "cuda" else f"{limit} CPU core(s)"
        raise LaunchError(f"NPROC={nproc} but this machine has {what}: one process per device")
    if port is not None:
        with socket.socket() as sock:
            try:
                sock.bind(("localhost", port))
            except OSError:
                raise LaunchError(f"PORT={port} is in use: pick another or leave PORT empty") from None
    return cfg, nproc, port


def loss_check(technique, nproc, run_id, cfg, tmp):
    """The distributed run's losses against one process on the same data: each step the NPROC
    ranks' micro-batches of BATCH, accumulated (REFERENCE_RANKS)."""
    dropout = models.check(cfg.model, cfg.seq, cfg.layers, cfg.blocks).dropout
    if dropout:
        return True, (f"loss check: skipped: {cfg.model} trains with dropout (p={dropout:g}), whose random masks "
                      f"differ between {nproc} ranks and one process, so the losses cannot match step by step "
                      "(a config with its dropout at 0 can be checked)")
    reference = Path(tmp) / "reference.csv"
    # CUDA graphs (a compile mode's) cannot replay an accumulated step (pytorch/pytorch#169545) and change no
    # loss: the reference accumulating the ranks' micro-batches compiles without them
    mode = "default" if cfg.compile_mode in catalog.GRAPHED_COMPILE_MODES else cfg.compile_mode
    single = run(technique, {"RESULTS_FILE": reference, "REFERENCE_RANKS": nproc, "PARALLEL": "", "COMPILE_MODE": mode},
                 capture=True)
    if single.status != "ok":
        return False, f"loss check: the single-process reference did not run: {single.line}"
    curves, frames = [], (results.read(cfg.results_file), results.read(reference))
    for df in frames:
        df = df[df["run_id"] == run_id] if run_id else df
        steps = df[(df["status"] == "ok") & df["phase"].isin(("warmup", "measured"))]  # training steps, not evals
        curves.append(steps.groupby("phase")["loss"].apply(list))
        run_id = None
    pairs = [(a, b) for phase in curves[0].index for a, b in zip(curves[0][phase], curves[1][phase])]
    deviation = max(abs(a - b) for a, b in pairs)
    largest = max(abs(loss) for pair in pairs for loss in pair)
    limit = tolerance(frames[1]["dtype"].iloc[-1], largest)
    ok = deviation <= limit
    verdict = "match" if ok else "MISMATCH: the parallel run does not train as one process does"
    single_text = f"single process, {nproc} x B={cfg.batch} accumulated"
    why = f" (one step of a bf16 loss at {largest:.3g})" if limit > LOSS_TOLERANCE else ""
    return ok, f"loss check: largest |loss - {single_text}| = {deviation:.2e} " + (
        f"<= {limit:g}{why}: {verdict}" if ok else f"> {limit:g}{why}: {verdict}"
    )


def tolerance(dtype, largest):
    """How far (nats) the two curves may differ at a step: LOSS_TOLERANCE, or where the loss is computed in bf16
    (bf16 weights: the logits and their cross-entropy in bf16) one bf16 step (ulp) at the largest loss: the ranks
    sum in another order than one process and move the last bit, 1/32 of a nat between 4 and 8."""
    if dtype != BF16_WEIGHTS or largest <= 0:
        return LOSS_TOLERANCE
    import torch

    return max(LOSS_TOLERANCE, torch.finfo(torch.bfloat16).eps * 2.0 ** math.floor(math.log2(largest)))


def launch(kind, technique, nproc, port, cfg, loss_check_on):
    """One run under torchrun, appended to RESULTS_FILE by rank 0; returns (the exit status, the run's id or
    None)."""
    # torchrun's own default, set here so that it does not print a banner about it
    threads = os.environ.get("OMP_NUM_THREADS", "1")
    outcome = run(technique, {"PARALLEL": kind}, launcher=torchrun(nproc, port), ranks=nproc, threads=threads)
    if outcome.status == "error":  # rank 0 has said how an ok or skipped run went
        print(f"{kind}: error: {outcome.line}", file=sys.stderr, flush=True)
        return 1, outcome.run_id
    with tempfile.TemporaryDirectory() as tmp:
        if loss_check_on and outcome.status == "ok":
            ok, text = loss_check(technique, nproc, outcome.run_id, cfg, tmp)
            print(text, flush=True)
            return 0 if ok else 1, outcome.run_id
    return 0, outcome.run_id


def scaling(kind, technique, nproc, port, cfg, out_dir, prefix):
    """Tokens/s at 1, 2, ... nproc processes, the efficiency against n x one process, a plot."""
    run_ids = []  # this invocation's runs only: a file's older runs are of other models, shapes or machines
    for n in range(1, nproc + 1):
        print(f"\n=== scaling: {kind} {technique} on {n} process(es)", flush=True)
        status, run_id = launch(kind, technique, n, port, cfg, loss_check_on=False)
        if status:
            return 1
        run_ids.append(run_id)
    df = results.read(cfg.results_file)
    ran = df[df["run_id"].isin(run_ids) & (df["status"] == "ok")]
    if ran.empty:  # each skipped (a CUDA-only technique on CPUs): it said why
        print("scaling: no run finished ok, so there is nothing to draw")
        return 0
    lines, path = scaling_plot.draw(ran, nproc, Path(out_dir) / f"{prefix}scaling_{kind}_{technique}.png")
    for line in lines:
        print(f"scaling: {line}")
    print(f"scaling: wrote {path}")
    return 0


def start(command):
    """`command` (ddp, fsdp, or scaling: world sizes 1..NPROC of KIND), every setting checked first."""
    given = settings.read()
    kind = given.kind if command == "scaling" else command
    technique = registry.one_chosen(given)
    cfg, nproc, port = check(kind, technique, given)
    out_dir = checks.output_dir("PLOTS_DIR", given.plots_dir)
    prefix = checks.file_prefix("PLOTSPREFIX", given.plotsprefix)
    if command == "scaling":
        return scaling(kind, technique, nproc, port, cfg, out_dir, prefix)
    return launch(kind, technique, nproc, port, cfg, given.loss_check)[0]


def main(argv):
    # config, results and launch errors are all BadInput: one line named for the command, exit 2
    return checks.command(argv[0])(start)(argv[0])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
