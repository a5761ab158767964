"""`make plan` / `make plan_check`: predicted peak GPU memory per technique, on any machine.

make plan        each technique of TECHNIQUES (blank: every script) at MODEL / LAYERS / BATCH /
                 SEQ (MODEL auto: gpt2, the GPU default) on GPU (ALLOCATOR, MODULE_LOADING):
                 predicted peak allocated, reserved and device total, the breakdown and the
                 time each plan took, printed and appended to RESULTS_FILE as `predicted` rows
                 (never step-time statistics)
make plan_check  the planner against every measured figure it can model: predicted,
                 measured, the error, which figure it is, and the bars
make codegen_check  each compiled graph of the plans of TECHNIQUES: its memory as the planner
                 counts it against the wrapper inductor generates for it (needs Triton)

usage: python -m utils.plan [--check | --codegen]   (settings from the environment)
"""

import argparse
import sys
import time

from utils import checks, registry, results, settings
from utils.plan import bands, codegen_check, comm, planner, reference, timing
from utils.plan.config import load_config, load_target, model_tflops, planned_device, predicted_row, where
from utils.plan.cuda import CUDA_MODEL, NOT_MODELLED
from utils.plan.device import least_mib
from utils.results import MEMORY_PARTS
from utils.techniques import setup_of
from utils.techniques.parallel import World

FIGURE = max(10, *(len(h) for h in MEMORY_PARTS))  # the memory table's columns: its widest header


def _mib(mib):
    return f"{mib:,.1f}"


def _header(first, target, memory, width):
    depth = f"{first.layers} layer{'s' * (first.layers != 1)}"
    print(f"plan: {first.model} ({depth}), B={first.batch} T={first.seq} per GPU, one training step on "
          f"{where(target, first.world)}, allocator {target.allocator}, CUDA module loading {target.loading} "
          f"(fake tensors, {planner.STEPS} steps; MiB)")
    print(f"  allocated: the tensors' peak + cuBLAS workspaces; reserved: the caching allocator replayed; "
          f"device total: reserved + {memory.note}")
    print(f"{'technique':<{width}} " + " ".join(f"{h:>{FIGURE}}" for h in ("allocated", "reserved", "total",
                                                                           *MEMORY_PARTS)) + "  fits   plan s")


def _line(name, plan, seconds, width):
    memory = plan.memory
    fits = "yes" if memory.fits else "**no**"
    # the allocator released its cache to go on (at the GPU's capacity); in the last step: every step's
    retries = f" (alloc retries: {memory.retries}, {memory.steady_retries} in the last step)" if memory.retries else ""
    figures = (memory.allocated_mib, memory.reserved_mib, memory.total_mib, *plan.breakdown.values())
    columns = " ".join(f"{_mib(v):>{FIGURE}}" for v in figures)
    return f"{name:<{width}} {columns}  {fits:<6} {seconds:5.1f}{retries}"


def _memory_notes(plans, target):
    """Below the memory table: unified memory beside the device total; where the allocator's cache filled the GPU
    (it released it to go on), the least memory the step runs in; a step in backward that frees nothing early."""
    for name, plan in plans.items():
        memory = plan.memory
        if plan.record.get("step_in_backward") and plan.record.get("compile_scope") == "model":
            print(f"{name}: compiled as one graph, backward returns every gradient at its end, so the optimizer "
                  "step in backward frees none early (COMPILE_SCOPE=blocks or blocks_in_checkpoint: each block's "
                  "backward hands its gradients to their steps as it ends)")
        if memory.unified_mib:
            resident = memory.total_mib - memory.reserved_mib - memory.context_mib
            print(f"{name}: bitsandbytes' paged optimizer state, {memory.unified_mib:,.1f} MiB of CUDA unified memory "
                  f"that allocated and reserved never count; the device total holds the {resident:,.1f} MiB the GPU "
                  "has room for, the driver pages the rest to host memory")
        if memory.fits and memory.retries:
            print(f"{name}: the allocator's cache filled the GPU (it keeps freed blocks while there is room; "
                  f"releases: {memory.retries}, in the last step: {memory.steady_retries}): reserved is what the GPU "
                  f"had, not what the step needs; the step runs in as little as {least_mib(plan, target) / 1024:,.1f} "
                  "GiB, the CUDA context included (the allocator replayed with less memory, bisected to 64 MiB; "
                  "releasing its cache more often as memory shrinks)")


def _comm_table(plans, singles, target):
    """N GPUs: per GPU, the compute, the collectives (hidden and exposed), tokens/s and the scaling
    against the same step on one GPU (utils/plan/comm.py)."""
    first = next(iter(plans.values())).time.comm
    if first is None:
        return
    width = max(14, *(len(n) for n in plans))
    print(f"\nper GPU, N GPUs (rank 0; NODES={target.nodes}; collectives: {comm.BACKEND}; "
          f"{'NVLink' if target.gpu.nvlink else 'PCIe'} within a node, one NIC per GPU between nodes)")
    print(f"{'technique':<{width}} {'compute ms':>10} {'comm ms':>9} {'exposed':>9} {'step ms':>9} {'tokens/s':>10} "
          f"{'1 GPU':>10}  scaling")
    for name, plan in plans.items():
        step, one = plan.time, singles.get(name)
        exposed = sum(step.comm.exposed_ms.values())
        scaling = f"{step.tokens_per_s / one.tokens_per_s:.0%}" if one else "–"
        print(f"{name:<{width}} {step.step_ms - exposed:>10.1f} {step.comm.total_ms:>9.1f} {exposed:>9.1f} "
              f"{step.step_ms:>9.1f} {step.tokens_per_s:>10,.0f} {one.tokens_per_s if one else 0:>10,.0f}  {scaling}")


def _time_table(plans, target):
    """Predicted step time per technique: a roofline over the step's ops (utils/plan/timing.py)."""
    if not plans:
        return
    base = plans.get(registry.BASELINE) or next(iter(plans.values()))
    base_name = next(n for n, p in plans.items() if p is base)
    width = max(14, *(len(n) for n in plans))
    print(f"\npredicted step time on {target.gpu.name}: a roofline over the step's ops (timing.py's declared "
          f"efficiencies), not measured; bound: G GPU, h host launches")
    print(f"{'technique':<{width}} {'step ms':>9} {'forward':>9} {'backward':>9} {'optimizer':>9} {'tokens/s':>10} "
          f"{'MFU':>6} {'kernels':>8}  speedup vs {base_name}")
    for name, plan in plans.items():
        step = plan.time
        parts = " ".join(f"{ms:>8.1f}{step.bound[phase][0]}" for phase, ms in step.ms.items())
        tflops, peak = model_tflops(plan)
        mfu = f"{tflops / peak:.1%}" if peak else "–"
        print(f"{name:<{width}} {step.step_ms:>9.1f} {parts} {step.tokens_per_s:>10,.0f} {mfu:>6} {step.kernels:>8}  "
              f"{base.time.step_ms / step.step_ms:.2f}x")
    print("\nwhere the GPU's time goes (roofline ms per step, the host's launches and the collectives apart; "
          "memory-bound: what fusion and lower precision can cut; host link: offloaded activations' copies)")
    print(f"{'technique':<{width}} {'matmul':>9} {'attention':>9} {'memory':>9} {'of it fp32':>10} {'host link':>10}")
    for name, plan in plans.items():
        ms = timing.gpu_ms_by_kind(plan.ops, target.gpu, plan.tf32)
        print(f"{name:<{width}} {ms['matmul']:>9.1f} {ms['attention']:>9.1f} {ms['memory']:>9.1f} "
              f"{ms['memory fp32']:>10.1f} {ms['host link']:>10.1f}")


def _band_table(plans):
    """Each figure's error band: the spread make plan_check measured for plans of its kind (utils/plan/bands.py)."""
    found = bands.read()
    if not found:
        print(f"\nerror bands: none ({bands.DOC.name} has no bands: make plan_check > docs/plan_check.md writes them)")
        return
    width = max(14, *(len(n) for n in plans))
    print("\nerror bands: predicted / measured - 1, lowest…highest (rows) among make plan_check's rows of the "
          "same kind (docs/plan_check.md): the spread seen, not a confidence interval")
    rows = {}
    for name, plan in plans.items():
        kinds = {figure: bands.kind_of(plan, figure) for figure in bands.FIGURES}
        step = kinds["step time"]
        rows[name] = (kinds["allocated"] + (f" (step: {step})" if step != kinds["allocated"] else ""), kinds)
    kind_width = max(len("kind"), *(len(kind) for kind, _ in rows.values()))
    print(f"{'technique':<{width}} {'kind':<{kind_width}} " + " ".join(f"{f:>16}" for f in bands.FIGURES))
    for name, (kind, kinds) in rows.items():
        print(f"{name:<{width}} {kind:<{kind_width}} "
              + " ".join(f"{bands.band_text(found, f, kinds[f]):>16}" for f in kinds))


def plan_techniques(names, given):
    target = load_target(given)
    cfgs = {name: load_config(name, given) for name in names}
    setups = {name: setup_of(name)[1] for name in names}
    refused = {}
    for name, cfg in cfgs.items():
        try:
            planner.check_modelled(setups[name], cfg, target)
        except planner.NotModelled as why:
            refused[name] = str(why)
        except checks.BadInput:  # a setting the technique refuses (LORA_TARGETS naming nothing): before any plan
            raise
        except Exception:  # noqa: BLE001, S110 - it fails again when planned below, and is reported there
            pass
    if len(refused) == len(cfgs):  # the names as given may repeat a combination (flash+checkpointing, ...)
        raise checks.BadInput(f"the planner cannot model {'; '.join(f'{n}: {w}' for n, w in refused.items())}")
    rows, device, first, planned, failed, singles = [], planned_device(target), cfgs[names[0]], {}, [], {}
    width = max(14, *(len(n) for n in names))
    for name, cfg in cfgs.items():
        if name in refused:
            print(f"{name:<{width}} not modelled: {refused[name]}", flush=True)
            continue
        start = time.perf_counter()
        try:
            plan = planner.plan(setups[name], cfg, target)
        except Exception as err:  # noqa: BLE001 - one technique's failure must not cost the others their rows
            failed.append(name)
            said = (str(err).strip().splitlines() or [""])[0][:200]
            print(f"{name:<{width}} failed: {type(err).__name__}: {said}", file=sys.stderr, flush=True)
            continue
        if not rows:
            _header(first, target, plan.memory, width)
        print(_line(name, plan, time.perf_counter() - start, width), flush=True)
        rows.append(predicted_row(cfg, name, plan, device))
        # each row written as it is planned: a later technique that aborts the process (a C++ error) costs none
        results.append_rows(first.results_file, rows[-1:])
        planned[name] = plan
        if cfg.world.kind:  # the same step on one GPU: what N GPUs scale against
            singles[name] = planner.plan(setups[name], load_config(name, given, world=World()), target).time
    _memory_notes(planned, target)
    if planned:
        _time_table(planned, target)
        _comm_table(planned, singles, target)
        _band_table(planned)
    print("modelled on the CUDA side: " + "; ".join(CUDA_MODEL))
    print("not modelled: " + "; ".join(NOT_MODELLED))
    print(f"plan: {len(rows)} predicted row{'s' * (len(rows) != 1)} appended to {first.results_file}"
          + (f"; failed: {' '.join(failed)}" if failed else ""))
    return 1 if failed else 0


@checks.command("plan")
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--codegen", action="store_true")
    args = parser.parse_args(argv)
    given = settings.read()
    if args.check:
        return reference.check(given)
    if args.codegen:
        return codegen_check.check(registry.chosen(given), given)
    return plan_techniques(registry.chosen(given), given)


if __name__ == "__main__":
    sys.exit(main())
