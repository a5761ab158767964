"""`make plan` / `make plan_check`: predicted peak GPU memory per technique, on any machine.

make plan        each technique of TECHNIQUES at MODEL / BATCH / SEQ (MODEL auto: gpt2, the
                 GPU default): predicted peak allocated and its breakdown, printed and
                 appended to RESULTS_FILE as `predicted` rows (never step-time statistics)
make plan_check  the planner against the H100 peaks of ../shared/README.md (GPT-2 124M,
                 B=16, T=1024): predicted, measured, error, and the 10% bar

usage: python -m utils.plan [--check] technique ...   (settings from the environment)
"""

import argparse
import functools
import os
import sys
import uuid
from datetime import datetime, timezone

from utils import config, env, memory, planner, results
from utils import techniques as t
from utils.model import PRESETS
from utils.profile import load_setup
from utils.run_all import known_techniques

ABSURD_BYTES = 2**40  # 1 TiB: several times the largest single GPU's memory
BAR = 0.10  # the accuracy bar of issue 8: within 10% of the measured peak


def check_batch(cfg):
    """Refuse a batch whose logits alone (B x T x vocab in bf16: materialised by every
    technique) outgrow any GPU: the plan would be absurd (and its sizes may overflow)."""
    vocab = PRESETS[cfg.model][0]["vocab_size"]
    logits = cfg.batch * cfg.seq * vocab * 2 * cfg.accum
    if logits > ABSURD_BYTES:
        raise config.ConfigError(
            f"BATCH={cfg.batch} x SEQ={cfg.seq}: the logits alone would take {logits / 2**40:,.0f} TiB, "
            "more than any GPU holds; plan a smaller batch"
        )


def load_config(technique, argv=None):
    """The run config a plan is for: MODEL auto means gpt2 (the GPU default), whatever
    this machine is; DEVICE is not asked (the plan is for a CUDA GPU)."""
    argv = [*(argv or []), "--device", "cpu"]
    if not any(a.startswith("--model") for a in argv):
        model = os.environ.get("MODEL") or "auto"
        argv += ["--model", "gpt2" if model == "auto" else model]
    cfg = config.load(technique, argv)
    check_batch(cfg)
    return cfg


def predicted_row(cfg, technique, plan, device):
    return {
        "run_id": uuid.uuid4().hex[:12],
        "timestamp_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "technique": technique,
        "repeat": 0,
        "status": "ok",
        "phase": "predicted",
        "kind": "predicted",
        "model": cfg.model,
        "batch": cfg.batch,
        "seq": cfg.seq,
        "data": cfg.data,
        "seed": cfg.seed,
        "n_params": plan.n_params,
        "flops_per_token": plan.flops_per_token,
        **plan.record,
        "attention": plan.attention,
        **memory.columns(plan.breakdown, plan.peak_mib),
        **device,
    }


def planned_device():
    here = env.capture("cpu")
    return {**here, "device": f"CUDA GPU (planned on {here['device']})"}


def _mib(mib):
    return f"{mib:,.1f}"


def plan_techniques(names):
    try:
        cfgs = {name: load_config(name) for name in names}
    except config.ConfigError as err:
        print(f"plan: error: {err}", file=sys.stderr)
        return 2
    refused = {}
    for name, cfg in cfgs.items():
        try:
            planner.check_modelled(load_setup(name), cfg)
        except planner.NotModelled as why:
            refused[name] = str(why)
    if len(refused) == len(names):
        print(f"plan: error: the planner cannot model {'; '.join(f'{n}: {w}' for n, w in refused.items())}",
              file=sys.stderr)
        return 2
    first = cfgs[names[0]]
    print(f"plan: {first.model}, B={first.batch} T={first.seq}, peak CUDA memory allocated per training step "
          f"(fake tensors, {planner.STEPS} steps; MiB)")
    print(f"{'technique':<14} " + " ".join(f"{h:>10}" for h in ("peak", *memory.PARTS)))
    rows = []
    device = planned_device()
    for name, cfg in cfgs.items():
        if name in refused:
            print(f"{name:<14} not modelled: {refused[name]}", flush=True)
            continue
        plan = planner.plan(load_setup(name), cfg)
        parts = " ".join(f"{_mib(v):>10}" for v in plan.breakdown.values())
        print(f"{name:<14} {_mib(plan.peak_mib):>10} {parts}", flush=True)
        rows.append(predicted_row(cfg, name, plan, device))
    print("modelled on the CUDA side: " + "; ".join(planner.CUDA_MODEL))
    print("not modelled: " + "; ".join(planner.NOT_MODELLED))
    try:
        results.append_rows(first.results_file, rows)
    except results.ResultsFileError as err:
        print(f"plan: error: {err}", file=sys.stderr)
        return 2
    print(f"plan: {len(rows)} predicted rows appended to {first.results_file}")
    return 0


def _stack(*steps):
    def setup(run):
        t.strict_fp32(run)
        for step in steps:
            step(run)

    return setup


LION = functools.partial(t.lion, lr_scale=1 / 3, weight_decay_scale=3)
LION8 = functools.partial(t.lion_8bit, lr_scale=1 / 3, weight_decay_scale=3)
# the H100 reference table of ../shared/README.md (GPT-2 124M, T=1024, bare training loop,
# torch 2.11+cu130, measured 2026-11-23): (configuration, the suite's technique functions
# that make it, or None where the planner cannot model one, batch, peak allocated GiB)
H100_PEAKS = (
    ("fp32, AdamW, manual attention (baseline)", _stack(t.adamw), 16, 31.9),
    ("tf32 (tf32)", _stack(t.tf32, t.adamw), 16, 31.9),
    ("bf16 autocast (bf16)", _stack(t.autocast_bf16, t.adamw), 16, 29.6),
    ("bf16 + SDPA flash (flash)", _stack(t.autocast_bf16, t.flash_attention, t.adamw), 16, 16.0),
    ("bf16 + flash + fused AdamW", _stack(t.autocast_bf16, t.flash_attention, t.fused_adamw), 16, 16.1),
    ("bf16 + flash + AdamW8bit", _stack(t.autocast_bf16, t.flash_attention, t.adamw_8bit), 16, 15.4),
    ("bf16 + flash + Lion (bnb)", _stack(t.autocast_bf16, t.flash_attention, LION), 16, 15.6),
    ("bf16 + flash + Lion8bit", _stack(t.autocast_bf16, t.flash_attention, LION8), 16, 15.2),
    ("bf16 + flash + fused + checkpointing", _stack(t.autocast_bf16, t.flash_attention, t.checkpoint_blocks,
                                                    t.fused_adamw), 16, 11.4),
    ("fp16 + flash + fused", _stack(t.autocast_fp16, t.flash_attention, t.fused_adamw), 16, 16.4),
    ("fp32 + torch.compile (compile)", _stack(t.adamw, t.compile_model), 16, 29.4),
    ("bf16 + flash + fused + compile (stack)", _stack(t.autocast_bf16, t.flash_attention, t.fused_adamw,
                                                      t.compile_model), 16, 11.5),
    ("same, B=32 (stack)", _stack(t.autocast_bf16, t.flash_attention, t.fused_adamw, t.compile_model), 32, 21.3),
)


def check():
    """Print predicted vs the H100's peak allocated for every reference configuration."""
    print("plan_check: predicted peak allocated vs H100 measured (../shared/README.md), GPT-2 124M, T=1024")
    print("| configuration | B | H100 GiB | predicted GiB | error | within 10% |")
    print("|---|---|---|---|---|---|")
    errors, missed = [], []
    for label, setup, batch, measured_gib in H100_PEAKS:
        cfg = load_config("plan_check", ["--batch", str(batch), "--seq", "1024", "--model", "gpt2"])
        try:
            predicted = planner.plan(setup, cfg).peak_mib / 1024
        except planner.NotModelled as why:
            print(f"| {label} | {batch} | {measured_gib} | not modelled: {why} | – | – |", flush=True)
            continue
        error = predicted / measured_gib - 1
        errors.append(abs(error))
        ok = abs(error) <= BAR
        missed += [] if ok else [label]
        print(f"| {label} | {batch} | {measured_gib} | {predicted:.2f} | {error:+.1%} | {'yes' if ok else '**no**'} |",
              flush=True)
    print(f"plan_check: {len(errors) - len(missed)} of {len(errors)} modelled configurations within 10% "
          f"(largest error {max(errors):.1%})" + (f"; missed: {', '.join(missed)}" if missed else ""))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true")
    parser.add_argument("techniques", nargs="*")
    args = parser.parse_args(argv)
    if args.check:
        return check()
    unknown = [name for name in args.techniques if name not in known_techniques()]
    if unknown or not args.techniques:
        print(f"plan: error: unknown technique {' '.join(unknown) or '(none given)'}; "
              f"known: {' '.join(known_techniques())}", file=sys.stderr)
        return 2
    return plan_techniques(args.techniques)


if __name__ == "__main__":
    sys.exit(main())
