"""Step time predicted for this CPU: the planner's step as the CPU runs it (model_cuda=False) on the
roofline of this machine's measured rates (utils/plan/machine.py), each op also paying the host's
time per eager op measured on the technique's own step. make plan_check holds it to real steps
here (its two tables: the tracked tensor peak of real steps against their plans, and step time); make
tune VERIFY=k on a CPU ranks by it before it measures."""

import dataclasses
import statistics

import torch

from utils.measure import loop, memory
from utils.measure.data import batches
from utils.plan import bands, machine, planner, timing
from utils.plan.config import load_config
from utils.techniques import setup_of
from utils.techniques.parallel import World
from utils.techniques.run import new_run

TRACKED_BAR = 0.02  # fake vs real tracking on this CPU
TIME_BAR = 0.30  # this CPU's step time within 30%
TRACKED_TECHNIQUES = ("baseline", "bf16", "flash", "checkpointing", "lion", "8bit", "accum")
TIME_TECHNIQUES = ("baseline", "checkpointing", "lion", "fused", "accum")  # fp32: this CPU's measured peak


def host_op_us(technique, given, device, **fields):
    """machine.host_op_us of the technique's own step (its script's setup, so its code path: a
    checkpoint's recompute, bitsandbytes' CPU kernels) on one block of the tiny preset at B=1, T=8,
    where compute is microseconds: not the rows it is used on (B=4, T=128 and more). `fields`:
    run settings over `given` (compile_mode, accum)."""
    fields = {"model": "tiny", "layers": 1, "batch": 1, "seq": 8, **fields}
    cfg = dataclasses.replace(load_config(technique, given, world=World(), **fields), device="cpu", data="fixed")
    run, data = new_run(cfg), batches(cfg)
    setup_of(technique)[1](run)
    micro = [next(data) for _ in range(run.accum)]
    return machine.host_op_us(lambda mark: run.step(run, micro, mark), device)


def step_time(cfg, device, op_us):
    """(the plan of cfg's step on this CPU, its predicted StepTime on `device`: machine.measured_cpu's)."""
    plan = planner.plan(setup_of(cfg.technique)[1], cfg, model_cuda=False)
    tokens = cfg.batch * cfg.seq * (cfg.accum if "accum" in cfg.technique.split("+") else 1)
    return plan, timing.step_time(plan.ops, device, tokens, serial=True, eager_op_us=op_us)


def tracked_rows(given, table_row):
    """Real tracked steps on this CPU vs the planner's step as this CPU runs it."""
    errors = []
    print("\n### This CPU: the tracked tensor peak of a real step vs the plan of the same step (fake tensors)\n")
    table_row(["model", "technique", "figure", "measured MiB", "predicted MiB", "error",
               f"within {TRACKED_BAR:.0%}"])
    table_row(["---"] * 7)
    for model, batch, seq in (("tiny", 4, 128), ("small", 4, 256)):
        for technique in TRACKED_TECHNIQUES:
            cfg = dataclasses.replace(load_config(technique, given, model=model, batch=batch, seq=seq), device="cpu",
                                      data="fixed")
            setup = setup_of(technique)[1]
            run, data = new_run(cfg), batches(cfg)
            setup(run)
            for _ in range(planner.STEPS):  # the optimizer state exists from the first step on, as in the plan
                run.step(run, [next(data) for _ in range(run.accum)])
            real = memory.tracked_step(run, data)["mem_peak_mib"]
            fake = planner.plan(setup, cfg, model_cuda=False).peak_mib
            errors.append((f"{model} {technique}", fake / real - 1))
            table_row([model, f"`{technique}`", "tracked", f"{real:,.1f}", f"{fake:,.1f}", f"{errors[-1][1]:+.1%}",
                       bands.verdict(errors[-1][1], TRACKED_BAR)])
    return errors


def time_rows(given, table_row):
    """This CPU as a second check of the roofline: its own measured rates, the suite's real steps."""
    device, tflops, tbs = machine.measured_cpu(f"{torch.get_num_threads()} threads")
    print(f"\n### This CPU: step time, the same roofline on its measured rates ({tflops:.3f} TFLOP/s fp32 matmul, "
          f"{tbs * 1e3:.1f} GB/s copy; the host's time per eager op in each phase measured on the technique's own "
          "step at B=1, T=8, one block; ops run where they are dispatched: device + host time)\n")
    table_row(["model", "technique", "host us per op (forward / backward / optimizer)",
               "measured ms (median of 25 / 5)", "predicted ms", "error", f"within {TIME_BAR:.0%}"])
    table_row(["---"] * 7)
    rows, op_us = [], {technique: host_op_us(technique, given, device) for technique in TIME_TECHNIQUES}
    # steps: a fraction of a second of the tiny preset's steps is at the mercy of a shared machine's dips
    for model, batch, seq, steps in (("tiny", 4, 128, 25), ("small", 4, 256, 5)):
        for technique in TIME_TECHNIQUES:
            cfg = dataclasses.replace(load_config(technique, given, model=model, batch=batch, seq=seq, world=World()),
                                      device="cpu", data="fixed")
            run = new_run(cfg)
            setup_of(technique)[1](run)
            measured_ms = statistics.median(loop.measure(run, batches(cfg), steps, 2)[1].step_ms)
            predicted = step_time(cfg, device, op_us[technique])[1].step_ms
            rows.append((f"{model} {technique}", predicted / measured_ms - 1))
            host = " / ".join(f"{op_us[technique].get(phase, 0):.1f}" for phase in timing.PHASES)
            table_row([model, f"`{technique}`", host, f"{measured_ms:.1f}", f"{predicted:.1f}",
                       f"{rows[-1][1]:+.1%}", bands.verdict(rows[-1][1], TIME_BAR)])
    return rows
