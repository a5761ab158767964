"""`make ddp` / `make fsdp` / `make scaling_gpus`: a technique under torchrun, PyTorch's own
launcher, one process per device (GPUs: NCCL; CPUs: gloo).

    make ddp NPROC=2                     torchrun --standalone --nproc_per_node=2 scripts/baseline.py
    make fsdp NPROC=4 TECHNIQUE=stack    the same with FSDP2
    make scaling_gpus NPROC=4 KIND=ddp   world sizes 1, 2, ... NPROC: tokens/s and efficiency

Several machines: run the same line on each with torchrun's rendezvous instead of --standalone
(see the README): torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d
--rdzv-endpoint=HOST:PORT scripts/<technique>.py, with PARALLEL=ddp|fsdp in the environment.

Checked before anything starts: NPROC against the devices, PORT free, the settings. After a
run: which rank failed and why (each rank leaves a one-line summary; a rank that left none
was killed), and, with LOSS_CHECK=1, the loss curve against a single process at BATCH x NPROC
on the same sequences (utils/data.py), within LOSS_TOLERANCE.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from utils import checks, config, parallel, results, scaling_plot
from utils.run_all import SCRIPTS, known_techniques

LOSS_TOLERANCE = 1e-3  # nats per step: reduction order differs across ranks, nothing else may


class LaunchError(checks.BadInput):
    """Bad input for a launch: one line, exit 2."""


def max_processes(device):
    """More processes than devices measures contention, not scaling."""
    import torch

    if device == "cuda":
        return torch.cuda.device_count()
    return os.cpu_count() or 1


def check(kind, technique, nproc_text, port_text):
    if kind not in parallel.KINDS:
        raise LaunchError(f"unknown parallel kind {kind!r}; one of {', '.join(parallel.KINDS)}")
    if not (SCRIPTS / f"{technique}.py").is_file():
        raise LaunchError(f"unknown TECHNIQUE {technique!r}; known: {' '.join(known_techniques())}")
    try:
        cfg = config.load(technique, argv=[])
        nproc = checks.integer("NPROC", nproc_text)
    except config.ConfigError as err:
        raise LaunchError(str(err)) from None
    limit = max_processes(cfg.device)
    if nproc > limit:
        what = f"{limit} GPU(s)" if cfg.device == "cuda" else f"{limit} CPU core(s)"
        raise LaunchError(f"NPROC={nproc} but this machine has {what}: one process per device")
    port = None
    if port_text:
        port = checks.integer("PORT", port_text, 1, 65535)
        with socket.socket() as sock:
            try:
                sock.bind(("localhost", port))
            except OSError:
                raise LaunchError(f"PORT={port} is in use: pick another or leave PORT empty") from None
    return cfg, nproc, port


def torchrun(kind, technique, nproc, port, summary, extra_env=None):
    """Run the technique under torchrun; returns its exit status."""
    rendezvous = ["--standalone"] if port is None else ["--rdzv-backend=c10d", f"--rdzv-endpoint=localhost:{port}"]
    cmd = [sys.executable, "-m", "torch.distributed.run", *rendezvous, f"--nproc_per_node={nproc}"]
    env = {**os.environ, "PARALLEL": kind, "SUMMARY_FILE": str(summary), **(extra_env or {})}
    env.setdefault("OMP_NUM_THREADS", "1")  # torchrun's own default, set here so it does not print a banner
    return subprocess.run([*cmd, str(SCRIPTS / f"{technique}.py")], env=env).returncode


def outcome(summary, nproc):
    """(status, line, run_id) of the whole run from the ranks' summaries."""
    ranks = {}
    for rank in range(nproc):
        path = Path(f"{summary}.{rank}")
        ranks[rank] = json.loads(path.read_text()) if path.exists() else None
    failed = [s["line"] for s in ranks.values() if s and s["status"] not in ("ok", "skipped")]
    silent = [rank for rank, s in ranks.items() if s is None]
    interrupted = [line for line in failed if "interrupted" in line]
    causes = [line for line in failed if "interrupted" not in line]
    if causes or silent:
        # a rank that vanished comes first: the others' collective errors follow from it
        why = [f"rank {rank} stopped without a summary (killed?)" for rank in silent]
        why += [("then " if silent else "") + line for line in causes]
        stopped = f"; {len(interrupted)} other rank(s) stopped by torchrun" if interrupted else ""
        return "error", "; ".join(why) + stopped + "; nothing was written", None
    return ranks[0]["status"], ranks[0]["line"], ranks[0].get("run_id")


def loss_check(technique, nproc, run_id, cfg, tmp):
    """The distributed run's losses against one process at BATCH x NPROC on the same data."""
    reference = Path(tmp) / "reference.csv"
    env = {**os.environ, "RESULTS_FILE": str(reference), "BATCH": str(cfg.batch * nproc)}
    env.pop("PARALLEL", None)
    subprocess.run([sys.executable, str(SCRIPTS / f"{technique}.py")], env=env, capture_output=True, check=True)
    curves = []
    for df in (results.read(cfg.results_file), results.read(reference)):
        df = df[df["run_id"] == run_id] if run_id else df
        steps = df[(df["status"] == "ok") & df["phase"].isin(("warmup", "measured"))]  # training steps, not evals
        curves.append(steps.groupby("phase")["loss"].apply(list))
        run_id = None
    deviation = max(
        abs(a - b) for phase in curves[0].index for a, b in zip(curves[0][phase], curves[1][phase])
    )
    ok = deviation <= LOSS_TOLERANCE
    verdict = "match" if ok else "MISMATCH: the parallel run does not train as one process does"
    return ok, f"loss check: largest |loss - single process at B={cfg.batch * nproc}| = {deviation:.2e} " + (
        f"<= {LOSS_TOLERANCE:g}: {verdict}" if ok else f"> {LOSS_TOLERANCE:g}: {verdict}"
    )


def launch(kind, technique, nproc, port, cfg, loss_check_on):
    """One run under torchrun, appended to RESULTS_FILE by rank 0; returns the exit status."""
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "summary.json"
        code = torchrun(kind, technique, nproc, port, summary)
        status, line, run_id = outcome(summary, nproc)
        if status == "error" or code != 0:  # rank 0 has said how an ok or skipped run went
            print(f"{kind}: error: {line}", file=sys.stderr, flush=True)
            return 1
        if loss_check_on and status == "ok":
            ok, text = loss_check(technique, nproc, run_id, cfg, tmp)
            print(text, flush=True)
            return 0 if ok else 1
    return 0


def scaling(kind, technique, nproc, port, cfg, out_dir, prefix):
    """Tokens/s at 1, 2, ... nproc processes, the efficiency against n x one process, a plot."""
    for n in range(1, nproc + 1):
        print(f"\n=== scaling: {kind} {technique} on {n} process(es)", flush=True)
        if launch(kind, technique, n, port, cfg, loss_check_on=False):
            return 1
    df = results.read(cfg.results_file)
    ran = df[(df["technique"] == technique) & (df["parallel"] == kind) & (df["status"] == "ok")]
    lines, path = scaling_plot.draw(ran, nproc, Path(out_dir) / f"{prefix}scaling_{kind}_{technique}.png")
    for line in lines:
        print(f"scaling: {line}")
    print(f"scaling: wrote {path}")
    return 0


def main(argv):
    command, kind, technique = (argv[0], argv[1], argv[2]) if argv[0] == "scaling" else ("run", *argv[:2])
    try:
        cfg, nproc, port = check(kind, technique, os.environ.get("NPROC", "2"), os.environ.get("PORT", ""))
        loss_check_on = checks.integer("LOSS_CHECK", os.environ.get("LOSS_CHECK", "1"), 0, 1) == 1
        out_dir = checks.output_dir("PLOTS_DIR", os.environ.get("PLOTS_DIR", "plots"))
        prefix = checks.file_prefix("PLOTSPREFIX", os.environ.get("PLOTSPREFIX", ""))
    except checks.BadInput as err:  # config, results and launch errors are all BadInput
        print(f"{kind}: error: {err}", file=sys.stderr)
        return checks.EXIT_BAD_INPUT
    if command == "scaling":
        return scaling(kind, technique, nproc, port, cfg, out_dir, prefix)
    return launch(kind, technique, nproc, port, cfg, loss_check_on)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
