"""The judging half of gpu_check: pure functions from what was recorded (the probe's readings,
results.csv rows, a command's output) to Checks, each line a value, its bar and a verdict.
No torch and no GPU: tests feed them rows that pass and rows that fail."""

import re
from dataclasses import dataclass

import pandas as pd

PASS, FAIL, NA, INFO = "pass", "FAIL", "not applicable", "info"

# (a) precision: max |fp32 product - fp64 product| / RMS of the fp64 product, 2048 x 2048 randn.
# measured: fp32 2e-6 on a CPU but 1.03e-5 through cuBLAS on an H200 (torch 2.11, 2026-12-04: its
# accumulation order sums more rounding); TF32 (10 mantissa bits) 1.49e-3 there, 2e-3 emulated by
# rounding on a CPU. One bar between them, a decade from each: below is fp32, above is TF32
STRICT_FP32_MAX_ERROR = TF32_MIN_ERROR = 1e-4
AMPERE = (8, 0)  # TF32 and native bf16 need compute capability 8.0
# variable -> (the value that defeats a setting, the setting it defeats); the techniques refuse
# the same two (utils/techniques/stages.py: TF32_FORCED_ON, TF32_FORCED_OFF; a test holds them equal)
OVERRIDES = {"TORCH_ALLOW_TF32_CUBLAS_OVERRIDE": ("1", "strict_fp32"), "NVIDIA_TF32_OVERRIDE": ("0", "tf32")}

# (b) smoke: the techniques, and what each run's rows must say ran
SMOKE = ("baseline", "tf32", "bf16", "fp16", "flash", "fused", "cudagraphs", "offload", "8bit", "stack")
FUSED_ATTENTION = ("sdpa:flash", "sdpa:efficient", "sdpa:cudnn", "flash_attn")
EXPECTED = {
    "baseline": {"dtype": ("fp32",), "optimizer": ("torch.optim.AdamW",)},
    "tf32": {"dtype": ("tf32",)},
    "bf16": {"dtype": ("bf16-autocast",)},
    "fp16": {"dtype": ("fp16-autocast",)},
    "flash": {"dtype": ("bf16-autocast",), "attention": FUSED_ATTENTION},
    "fused": {"dtype": ("fp32",), "fused": (True,)},
    "cudagraphs": {"dtype": ("fp32",), "cuda_graphs": (True,)},
    "offload": {"dtype": ("fp32",), "optimizer": ("torchao.optim.CPUOffloadOptimizer",)},
    "8bit": {"dtype": ("fp32",), "optimizer": ("bitsandbytes.optim.AdamW8bit",)},
    "stack": {"dtype": ("bf16-autocast",), "attention": FUSED_ATTENTION, "fused": (True,), "compiled": (True,)},
}
# skipped for a documented capability limit (tf32, bf16 and what brings bf16) below Ampere
CAPABILITY_SKIPS = ("tf32", "bf16", "flash", "stack")
# fp16's GradScaler skips the first steps while its scale falls to fit; more than this is a broken path
MAX_SCALER_SKIP_FRACTION = 0.2

# (c) timing: end-to-end (wall) tokens/s over the median per-step tokens/s. Above the top the
# wall-clock saw less than the steps took (it stopped before the GPU finished, or steps were
# counted twice); below the bottom over half the wall time lies outside the timed steps (the
# step clock misses work, or the host is the limit)
WALL_OVER_STEP_MAX = 1.05
WALL_OVER_STEP_MIN = 0.5

LOSS_MATCH = re.compile(r"^loss check: .*: match$", re.M)


@dataclass(frozen=True)
class Result:
    """One line of a check: what it is about, the figure, the bar it is held to, the verdict."""

    subject: str
    quantity: str
    value: str
    bar: str  # "–" for a figure shown, not judged
    verdict: str  # PASS, FAIL, NA or INFO


@dataclass(frozen=True)
class Check:
    key: str  # a .. f
    title: str
    about: str  # what it checks and why, one line
    results: tuple

    @property
    def verdict(self):
        verdicts = {r.verdict for r in self.results}
        return FAIL if FAIL in verdicts else PASS if PASS in verdicts else NA

    @property
    def summary(self):
        alone = self.verdict == NA and len(self.results) == 1
        return f"{self.verdict} ({self.results[0].value})" if alone else self.verdict


def judged(subject, quantity, value, bar, ok):
    return Result(subject, quantity, value, bar, PASS if ok else FAIL)


def info(subject, quantity, value):
    return Result(subject, quantity, value, "–", INFO)


def text(value):
    return "blank" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


# (a) precision


def precision(probe):
    """The probe's readings (probe.py) after strict_fp32, then after tf32: the flags each
    leaves, an fp32 matmul's error under each, and the override variables."""
    older = tuple(probe["capability"]) < AMPERE
    results = _setting("strict_fp32", probe["strict_fp32"], False, older)
    results += _setting("tf32", probe["tf32"], True, older)
    for name, (defeating, defeated) in OVERRIDES.items():
        value = probe["overrides"].get(name)
        shown, bar = "unset" if value is None else value, f"unset, or not {defeating} ({defeating} defeats {defeated})"
        if defeated == "tf32" and "skipped" in probe["tf32"] and older:
            results.append(Result("environment", name, shown, bar, NA))
        else:
            results.append(judged("environment", name, shown, bar, value != defeating))
    return Check("a", "precision", "the TF32 flags the suite's strict_fp32 and tf32 leave, and what an fp32 matmul "
                 "then computes (max |fp32 - fp64| / RMS of the fp64 product)", tuple(results))


def _setting(name, reading, on, older):
    """A setting's readings: every TF32 switch torch reads back (stages.tf32_state) on for tf32,
    off for strict_fp32, and the matmul error it computes with."""
    if "skipped" in reading or "refused" in reading:
        verdict = NA if name == "tf32" and older and "skipped" in reading else FAIL
        why = f"skipped: {reading['skipped']}" if "skipped" in reading else f"refused: {reading['refused']}"
        return [Result(name, "applied", why, "applies (tf32: compute capability 8.0+)", verdict)]
    want = "on" if on else "off"
    results = [judged(name, f"TF32 {switch}", "on" if held else "off", want, held == on)
               for switch, held in reading["flags"].items()]
    if not results:
        results.append(judged(name, "TF32 switches", "none read back", f"each {want}", False))
    error = reading["error"]
    if name == "tf32":
        bar, ok = f">= {TF32_MIN_ERROR:g}", error >= TF32_MIN_ERROR
    else:
        bar, ok = f"<= {STRICT_FP32_MAX_ERROR:g}", error <= STRICT_FP32_MAX_ERROR
    return [*results, judged(name, "matmul error", f"{error:.2e}", bar, ok)]


# which rows are whose


def label(row):
    """How a run is named here: its technique, and a compile mode other than the default."""
    mode = text(row["compile_mode"])
    return row["technique"] + (f" ({mode})" if mode not in ("blank", "default") else "")


def runs(rows):
    """{label: the rows of its latest single-process measured run} (plans and torchrun runs left out)."""
    own = rows[(rows["kind"].fillna("measured") == "measured") & (rows["parallel"].fillna("none") == "none")]
    latest = {}
    for run_id in own["run_id"].drop_duplicates():  # file order is append order: a later run replaces
        run = own[own["run_id"] == run_id]
        latest[label(run.iloc[0])] = run
    return latest


def measured_steps(run):
    """A run's measured-phase rows, the steps fp16's GradScaler skipped left out (as the report does)."""
    steps = run[run["phase"] == "measured"]
    return steps[steps["scaler_skipped"] != True]  # noqa: E712 - blank reads as not skipped


# (b) smoke


def smoke(rows, capability):
    """Each smoke technique ran (or was skipped for a documented capability limit), as what it should."""
    found = runs(rows)
    results = []
    for technique in SMOKE:
        results += _smoke_run(technique, found.get(technique), tuple(capability))
    return Check("b", "smoke", "make all at the check's shape: every technique ran, as what it says it is",
                 tuple(results))


def status_line(technique, run):
    """A run's status as a judged line: ok only for one that ended ok with measured rows."""
    if run is None:
        return judged(technique, "status", "no rows: the run wrote nothing (see all.log)", "ok", False)
    first = run.iloc[0]
    if first["status"] != "ok":
        return judged(technique, "status", f"{first['status']}: {text(first['reason'])}", "ok", False)
    if (run["phase"] != "measured").all():
        return judged(technique, "status", "ok but no measured rows", "ok, with measured rows", False)
    return judged(technique, "status", "ok", "ok", True)


def _smoke_run(technique, run, capability):
    first = run.iloc[0] if run is not None else None
    if first is not None and first["status"] == "skipped" and technique in CAPABILITY_SKIPS and capability < AMPERE:
        return [Result(technique, "status", f"skipped: {text(first['reason'])}",
                       "ok (skipped below compute capability 8.0)", NA)]
    status = status_line(technique, run)
    if status.verdict == FAIL:
        return [status]
    steps = run[run["phase"] == "measured"]
    results = [status]
    for column, allowed in EXPECTED[technique].items():
        value = steps[column].iloc[0]
        results.append(judged(technique, column, text(value), " or ".join(map(str, allowed)), value in allowed))
    if technique == "fp16":
        skipped = int((steps["scaler_skipped"] == True).sum())  # noqa: E712
        share = skipped / len(steps)
        results.append(judged(technique, "GradScaler skips", f"{skipped} of {len(steps)} measured steps ({share:.0%})",
                              f"<= {MAX_SCALER_SKIP_FRACTION:.0%}", share <= MAX_SCALER_SKIP_FRACTION))
    return results


# (c) timing


def timing(rows):
    """Every ok run: its wall tokens/s over its median per-step tokens/s, within the bars."""
    bar = f"{WALL_OVER_STEP_MIN:g} to {WALL_OVER_STEP_MAX:g}"
    results = []
    for name, run in runs(rows).items():
        steps = measured_steps(run)
        if run.iloc[0]["status"] != "ok" or steps.empty:
            continue
        step, wall = steps["tokens_per_s"].median(), steps["wall_tokens_per_s"].iloc[0]
        ratio = wall / step
        results.append(judged(name, "wall / per-step tokens/s", f"{wall:,.0f} / {step:,.0f} = {ratio:.2f}", bar,
                              WALL_OVER_STEP_MIN <= ratio <= WALL_OVER_STEP_MAX))
    if not results:
        results = [judged("every run", "wall / per-step tokens/s", "no run was ok", bar, False)]
    return Check("c", "timing", "the per-step clock (CUDA events) against the phase's wall-clock: each must see the "
                 "same work", tuple(results))


# (e) ddp and fsdp


def parallel(outcomes, gpus):
    """make ddp / fsdp with LOSS_CHECK=1: each exits 0 and says its loss check matched.
    `outcomes`: {kind: (exit status, output)}; with fewer than 2 GPUs nothing is run."""
    about = "make ddp / fsdp NPROC=2 LOSS_CHECK=1: the losses match one process at BATCH x 2"
    if gpus < 2:
        return Check("e", "ddp and fsdp", about, (Result("ddp, fsdp", "NPROC=2", f"{gpus} GPU", "2+ GPUs", NA),))
    results = []
    for kind, (status, output) in outcomes.items():
        matched = LOSS_MATCH.search(output)
        said = [line for line in output.splitlines() if line.startswith("loss check:")]
        value = f"exit {status}; " + (matched.group(0) if matched else (said[-1] if said else "no loss check line"))
        results.append(judged(kind, "exit status and loss check", value, "exit 0 and 'loss check: ...: match'",
                              status == 0 and bool(matched)))
    return Check("e", "ddp and fsdp", about, tuple(results))
