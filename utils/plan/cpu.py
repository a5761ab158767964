"""Step time predicted for this CPU: the planner's step as the CPU runs it (model_cuda=False) on the
roofline of this machine's measured rates (utils/plan/machine.py), each op also paying the host's
time per eager op measured on the technique's own step. make plan_check holds it to real steps
here; make tune VERIFY=k on a CPU ranks by it before it measures."""

import dataclasses

from utils.measure.data import batches
from utils.plan import machine, planner, timing
from utils.plan.config import load_config
from utils.techniques import setup_of
from utils.techniques.parallel import World
from utils.techniques.run import new_run


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
