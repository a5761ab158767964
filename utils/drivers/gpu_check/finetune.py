"""`make finetune_check`: the techniques fine-tuners use, measured on this GPU and planned for it,
one check (g) in the form of gpu_check's, into docs/results/<device>/finetune_check/.

Each technique runs as torchtune's recipes run it, over bf16 weights with no fp32 copy, alone;
then torchtune's QLoRA recipe whole (flash attention, checkpointing, chunked cross-entropy, each
layer compiled inside its checkpoint). Per run: it ran, as what it says (its rows' columns), its
loss fell, and `make plan` for this GPU beside it (gpu_check's tolerances); a run out of memory
passes only where the plan said it does not fit.

The model is Llama 3.2 1B (a model people fine-tune; its published config) at batch 2 of 1024
tokens: the GPU's work, not the host's launches, sets the step (the plan: 60-105 ms on an H100,
over 2,000 kernels), and the full bf16 runs need ~20 GiB: a 24 GiB GPU holds every run.

usage: python -m utils.drivers.gpu_check.finetune   (make finetune_check; its settings are fixed)
"""

import sys

from utils.drivers.gpu_check import judge_memory, measure
from utils.drivers.gpu_check.command import Command, gpu_key, main, planned
from utils.drivers.gpu_check.judge import FAIL, FUSED_ATTENTION, NA, Check, Result, judged, runs, status_line, text

SETTINGS = {"MODEL": "hf:llama-3.2-1b", "BATCH": "2", "SEQ": "1024", "STEPS": "10", "WARMUP": "3",
            "COMPILE_SCOPE": "blocks_in_checkpoint"}


def equal(*allowed):
    """(the bar as said, whether a recorded value meets it): one of `allowed`."""
    return " or ".join(map(str, allowed)), lambda value: value in allowed


def holding(part):
    return f"holds '{part}'", lambda value: part in text(value)


BF16_WEIGHTS = {"dtype": equal("bf16-weights")}
ADAPTERS = {"adapter": holding("lora r=8"), "trainable_params": ("under n_params", None)}  # None: judged apart
NF4 = {**BF16_WEIGHTS, **ADAPTERS, "adapter": holding("NF4 base")}
CHUNKED = ("above 1", lambda value: value > 1)  # loss_chunks
# each run as make all names it (the canonical combination) -> the columns that say it ran as itself
RUNS = {
    "pure_bf16": BF16_WEIGHTS,
    "pure_bf16+lora": {**BF16_WEIGHTS, **ADAPTERS},
    "qlora": NF4,
    "pure_bf16+chunked_ce": {**BF16_WEIGHTS, "loss_chunks": CHUNKED},
    "pure_bf16+offload_activations": {**BF16_WEIGHTS, "activation_offload": equal(True)},
    "pure_bf16+step_in_backward": {**BF16_WEIGHTS, "step_in_backward": equal(True)},
    "pure_bf16+paged_8bit": {**BF16_WEIGHTS, "optimizer": equal("bitsandbytes.optim.PagedAdamW8bit")},
    "pure_bf16+torchao_8bit": {**BF16_WEIGHTS, "optimizer": equal("torchao.optim.AdamW8bit")},
    # torchtune's QLoRA recipe (stack: bf16 autocast, flash, fused AdamW, compile)
    "stack+qlora+checkpointing+chunked_ce": {
        **NF4, "attention": equal(*FUSED_ATTENTION), "checkpointing": equal(True),
        "compile_scope": equal("blocks_in_checkpoint"), "loss_chunks": CHUNKED},
}


def measure_runs(folder, probe, settings=SETTINGS):
    """make all of every run, then make plan of them for this GPU (where the GPU table has it)."""
    techniques = " ".join(RUNS)
    ran = {"all": measure.make("all", folder, "all.log", TECHNIQUES=techniques, **settings)}
    key = gpu_key(probe["device"])
    if key is not None:
        ran["plan"] = measure.make("plan", folder, "plan.log", GPU=key, TECHNIQUES=techniques, **settings)
    return ran


def judge_runs(probe, rows, ran):
    """(g): each run's status, what ran, its loss, and the plan beside it."""
    key, (status, output) = gpu_key(probe["device"]), planned(ran)
    found, refused = runs(rows), judge_memory.refusals(output)
    predicted = rows[rows["kind"] == "predicted"]
    results = [] if key is None else [judged(f"GPU={key}", "make plan exit status", str(status), "0", status == 0)]
    for technique, expected in RUNS.items():
        plan = predicted[predicted["technique"] == technique]
        run = found.get(technique)
        results += _ran(technique, run, expected, plan, probe["memory_mib"])
        if run is None or run.iloc[0]["status"] != "ok":
            continue
        if key is None:
            results.append(Result(technique, "plan", "no entry in utils/devices.py's table for this GPU", "–", NA))
        else:  # it ran: the plan beside it
            results += judge_memory.plan_lines(technique, plan, run, refused.get(technique))
    return [Check("g", "fine-tuning", f"the techniques fine-tuners use at {SETTINGS['MODEL']}, B={SETTINGS['BATCH']}, "
                  f"T={SETTINGS['SEQ']}: each ran as itself, its loss fell, make plan for this GPU beside it",
                  tuple(results))]


def _ran(technique, run, expected, plan, memory_mib):
    if run is not None and run.iloc[0]["status"] == "oom":  # the planner's own question: did it say so?
        total = plan["device_total_mib"].max() if len(plan) else float("nan")
        fits = not total > memory_mib  # no plan: judged as if it fit
        said = f"oom; planned device total {total:,.0f} MiB of this GPU's {memory_mib:,.0f}"
        return [Result(technique, "status", said, "ok, or oom where planned over the GPU's memory",
                       FAIL if fits else NA)]
    status = status_line(technique, run)
    if status.verdict == FAIL:
        return [status]
    steps, warmup = run[run["phase"] == "measured"], run[run["phase"] == "warmup"]
    lines = [status]
    last = steps.iloc[-1]
    for column, (bar, meets) in expected.items():
        value = last[column]
        if column == "trainable_params":
            value, ok = f"{value:,.0f} of {last['n_params']:,.0f}", 0 < value < last["n_params"]
        else:
            value, ok = text(value), meets(value)
        lines.append(judged(technique, column, value, bar, ok))
    start = (warmup if len(warmup) else steps).iloc[0]["loss"]
    lines.append(judged(technique, "loss, first step -> last", f"{start:.3f} -> {last['loss']:.3f}", "falls",
                        last["loss"] < start))
    return lines


FINETUNE_CHECK = Command("finetune_check", "finetune_check", SETTINGS, measure_runs, judge_runs)

if __name__ == "__main__":
    sys.exit(main(FINETUNE_CHECK))
