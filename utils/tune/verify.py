"""make tune VERIFY=k: the tune proved where it runs.

Tuned for this machine (its GPU from the table; on a CPU, the planner's step on the CPU roofline
of this machine's measured rates: utils/plan/cpu.py), the top k measured here in fresh processes
(their rows appended to RESULTS_FILE as any run's), predicted against measured side by side and
re-ranked by what was measured. Then the measured winner and its reference (the baseline, or
`accum` at the winner's micro-batch split: the same sequences in the same order) train for
CONVERGENCE_STEPS steps each from the same seed: the winner still learns when its training loss
stays within the drift tolerance of the reference's at every step (utils/analysis/convergence.py's
tolerances, by precision) and falls.
"""

import dataclasses
import statistics
import sys

from utils import checks, devices, registry, results
from utils.analysis.convergence import DRIFT_TOLERANCE
from utils.catalog import BY_NAME, OPT_IN
from utils.drivers.runner import run
from utils.tune.space import Config, space


def this_gpu(given):
    """This machine's GPU (a utils.devices.GPU), or None on a CPU; refuses GPU= / GPUS= naming another."""
    import torch

    asked = set(given.gpus) | ({given.gpu} if "GPU" in given.given else set())
    if not torch.cuda.is_available():
        if asked:
            raise checks.BadInput(f"VERIFY measures on this machine, which has no GPU: drop GPU= / GPUS= "
                                  f"({' '.join(sorted(asked))})")
        return None
    name = torch.cuda.get_device_name()
    gpu = devices.by_name(name)
    if gpu is None:
        raise checks.BadInput(f"VERIFY: this machine's {name} is not in utils/devices.py's table, so no plan is for it")
    if asked - {gpu.key}:
        raise checks.BadInput(f"VERIFY measures on this machine's {gpu.name}: drop GPU= / GPUS= ({' '.join(asked)})")
    return gpu


def cpu_predictions(given, global_batch):
    """[(Config, predicted ms per step, tokens/s)] of the CPU space, fastest first, and its Pruned."""
    from utils.measure import config as run_config
    from utils.plan import cpu, machine

    device, tflops, _ = machine.measured_cpu("this CPU")
    configs, _, pruned = space(given.techniques, None)
    predicted = []
    for config in configs:
        name = config.technique
        fields = {"batch": global_batch, **config.compile_fields()}
        cfg = dataclasses.replace(run_config.load(name, dataclasses.replace(given, device="cpu", **fields)),
                                  data="fixed")
        # compiled kernels' host cost is timing.py's; the eager ops around them are measured without compile
        eager = "+".join(p for p in registry.combination(name).parts if p != "compile") or "baseline"
        try:
            op_us = cpu.host_op_us(registry.combination(eager).name, given, device)
            _, step = cpu.step_time(cfg, device, op_us)
        except Exception as err:  # noqa: BLE001 - one configuration's failure must not stop the ranking
            pruned.add("failed", f"{config.technique}: {type(err).__name__}: {str(err).splitlines()[0][:120]}")
            continue
        predicted.append((dataclasses.replace(config, batch=global_batch), step.step_ms, step.tokens_per_s))
    print(f"tune: this CPU measured at {tflops:.3f} TFLOP/s fp32 matmul", file=sys.stderr, flush=True)
    return sorted(predicted, key=lambda p: p[1]), pruned


def _measured_ms(outcome, results_file):
    if outcome.status != "ok":
        return None
    df = results.read(results_file)
    rows = df[(df["run_id"] == outcome.run_id) & (df["phase"] == "measured") & (df["status"] == "ok")]
    return statistics.median(rows["step_ms"]) if len(rows) else None


def _overrides(config, **more):
    compile_settings = {name.upper(): value for name, value in config.compile_fields().items()}
    return {"BATCH": config.batch, "ACCUM": config.accum, **compile_settings, **more}


def measure(top, given):
    """Each of `top` ([(Config, predicted ms, predicted tokens/s)]) run once here in a fresh process:
    [(Config, predicted ms, measured ms or None, the run's line)]."""
    out = []
    for config, predicted_ms, _ in top:
        print(f"tune: measuring {config.label} ...", file=sys.stderr, flush=True)
        outcome = run(config.full_name, _overrides(config), capture=True)
        out.append((config, predicted_ms, _measured_ms(outcome, given.results_file), outcome.line))
    return out


def _losses(run_id, results_file):
    """(training loss by step, the run's dtype) of one run's rows."""
    df = results.read(results_file)
    rows = df[(df["run_id"] == run_id) & df["phase"].isin(["warmup", "measured"]) & (df["status"] == "ok")]
    return rows.set_index("step")["loss"].astype(float), rows["dtype"].iloc[0]


def still_learns(winner, given):
    """(verdict line, ok): the winner's training loss against its reference's, step by step."""
    reference = Config("baseline" if winner.accum == 1 else "accum", "", winner.batch, 1)
    steps = {"STEPS": given.convergence_steps, "WARMUP": 0, "EVAL_EVERY": 0}
    runs = {}
    for config, name in ((winner, winner.full_name), (reference, reference.technique)):
        print(f"tune: convergence run of {name}, {given.convergence_steps} steps ...", file=sys.stderr, flush=True)
        outcome = run(name, _overrides(config, **steps, ACCUM=winner.accum), capture=True)
        if outcome.status != "ok":
            return f"the convergence run of {name} did not finish: {outcome.line}", False
        runs[name] = _losses(outcome.run_id, given.results_file)
    (mine, dtype), (ref, _) = runs.values()
    return learning_verdict(winner, reference.technique, mine, ref, dtype)


def learning_verdict(winner, reference, mine, ref, dtype):
    """(verdict line, ok) from the two runs' training losses by step (`mine` at `dtype`): within the drift
    tolerance of the reference at every step, its loss falling; a winner that changes what is learnt (an
    opted-in technique: LoRA, an 8-bit optimizer, bf16 weights) is held to its loss falling only."""
    gap = (mine - ref).abs().max()
    dtype = "fp32" if dtype == "fp32" else "reduced"
    tolerance = DRIFT_TOLERANCE[dtype]
    falls = bool(mine.iloc[-1] < mine.iloc[0])
    went = f"over {len(mine)} steps its training loss went {mine.iloc[0]:.3f} -> {mine.iloc[-1]:.3f}"
    changes = [p for p in registry.combination(winner.full_name).parts if BY_NAME[p].tune == OPT_IN]
    if changes:
        verdict = "its loss falls" if falls else "its loss does **not** fall"
        return (f"{verdict}: {went}, {reference}'s {ref.iloc[0]:.3f} -> {ref.iloc[-1]:.3f} (at most {gap:.2e} "
                f"apart); {', '.join(changes)} change{'s' if len(changes) == 1 else ''} what is learnt (opted in), so "
                "it is not held to the reference's losses"), falls
    ok = bool(gap <= tolerance and falls)
    verdict = "still learns" if ok else "does **not** learn as the baseline does"
    return (f"{verdict}: {went}, within {gap:.2e} of {reference}'s at every step (tolerance {tolerance:g}, "
            f"{dtype})"), ok


def section(top, given, where):
    """Measure the top VERIFY of `top` (predicted, fastest first), re-rank, check the winner learns:
    (markdown lines, exit status: 0, or 1 where a run failed or the winner does not learn)."""
    measured = measure(top[:given.verify], given)
    lines = [f"## Verified on {where}: predicted against measured", "",
             "| predicted rank | configuration | predicted ms | measured ms (median) | error | measured rank |",
             "| --- | --- | --- | --- | --- | --- |"]
    done = sorted((m for m in measured if m[2] is not None), key=lambda m: m[2])
    for i, (config, predicted_ms, measured_ms, line) in enumerate(measured):
        rank = done.index(measured[i]) + 1 if measured_ms is not None else "–"
        cells = (f"{measured_ms:,.2f} | {predicted_ms / measured_ms - 1:+.1%}" if measured_ms is not None
                 else f"did not run: {line} | –")
        lines.append(f"| {i + 1} | `{config.label}` | {predicted_ms:,.2f} | {cells} | {rank} |")
    if not done:
        return lines + ["", "None of them ran; nothing to re-rank.", ""], 1
    winner = done[0][0]
    verdict, ok = still_learns(winner, given)
    lines += ["", f"**Measured fastest:** `{winner.command()}`: {verdict}.", ""]
    return lines, 0 if ok and len(done) == len(measured) else 1
