"""What a plan is for and how it is written down: the run config (MODEL auto means gpt2, the
GPU default), the device it is planned for, and its `predicted` row."""

from utils import checks, results, settings
from utils.measure import config, env
from utils.measure.memory import columns

ABSURD_BYTES = 2**40  # 1 TiB: several times the largest single GPU's memory


def check_batch(cfg):
    """Refuse a batch whose logits alone (B x T x vocab in bf16: materialised by every
    technique) outgrow any GPU: the plan would be absurd (and its sizes may overflow)."""
    logits = cfg.batch * cfg.seq * (cfg.vocab_size or 0) * 2 * cfg.accum
    if logits > ABSURD_BYTES:
        raise checks.BadInput(
            f"BATCH={cfg.batch} x SEQ={cfg.seq}: the logits alone would take {logits / 2**40:,.0f} TiB, "
            "more than any GPU holds; plan a smaller batch"
        )


def load_config(technique, argv=None):
    """The run config a plan is for: MODEL auto means gpt2 (the GPU default), whatever this
    machine is; DEVICE is not asked (the plan is for a CUDA GPU)."""
    argv = [*(argv or []), "--device", "cpu"]
    if not any(a.startswith("--model") for a in argv):
        model = settings.text("MODEL")
        argv += ["--model", "gpt2" if model == "auto" else model]
    cfg = config.load(technique, argv)
    check_batch(cfg)
    return cfg


def planned_device():
    here = env.capture("cpu")
    return {**here, "device": f"CUDA GPU (planned on {here['device']})"}


def predicted_row(cfg, technique, plan, device):
    return results.identity(
        cfg, technique, device, status="ok", phase="predicted", kind="predicted", n_params=plan.n_params,
        flops_per_token=plan.flops_per_token, **plan.record, attention=plan.attention,
        **columns(plan.breakdown, plan.peak_mib),
    )
