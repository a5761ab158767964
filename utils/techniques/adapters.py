"""The adapters stage: LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language
Models") through PEFT: every weight of the model frozen, a trainable low-rank pair B·A (rank r,
scaled by alpha / r, B starting at zero so the model starts as built) beside each targeted
projection. No gradient or optimizer state for a frozen weight: what a fine-tune of a large
model fits by. PEFT injects the adapters into the model in place (inject_adapter_in_model), so
the suite's model, a transformers model or a file's keeps its interface."""

import contextlib
import logging

from utils import checks
from utils.techniques.run import Skip, technique

# LORA_TARGETS=auto: the LoRA paper's choice, the query and value projections (its section 7.1),
# by the names model families give them; a fused query-key-value projection is adapted whole
AUTO_TARGETS = (("q_proj", "v_proj"), ("c_attn",), ("query_key_value",), ("qkv_proj",), ("Wqkv",))
ADAPTER_PREFIX = "lora_"  # PEFT's LoRA parameters: lora_A, lora_B
# PEFT imports torchao and bitsandbytes where they are installed: their notices about optional
# native kernels (torchao 0.18's CUDA-only extensions on a CPU build of torch; its pytree
# registrations that torch 2.13 deprecates) are no news of this run's
IMPORT_NOISE = ("torchao", "torch.utils._pytree", "bitsandbytes")


@contextlib.contextmanager
def quiet(*loggers):
    """These loggers' warnings held back while an import runs; their levels restored after."""
    saved = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def targets(given, names, model):
    """The module-name suffixes to adapt: LORA_TARGETS's, each checked against the model's
    modules (`names`), or auto's first family present. Raises checks.BadInput or Skip."""
    if given == "auto":
        found = next((family for family in AUTO_TARGETS if all(_matches(t, names) for t in family)), None)
        if found is None:
            raise Skip(f"LORA_TARGETS=auto finds no query/value projection in {model} "
                       f"({', '.join('/'.join(f) for f in AUTO_TARGETS)}): name its modules in LORA_TARGETS")
        return found
    wanted = tuple(t.strip() for t in given.split(",") if t.strip())
    missing = [t for t in wanted if not _matches(t, names)]
    if missing or not wanted:
        raise checks.BadInput(f"LORA_TARGETS={given!r}: {model} has no module named {missing[0] if missing else ''!r} "
                              f"(its projections include {', '.join(_linear_names(names)[:8])})")
    return wanted


def _matches(target, names):
    return any(name == target or name.endswith("." + target) for name in names)


def _linear_names(names):
    return sorted({name.rsplit(".", 1)[-1] for name in names if name})


@technique
def lora_adapters(run):
    try:
        with quiet(*IMPORT_NOISE):
            from peft import LoraConfig, inject_adapter_in_model
    except ImportError as err:
        raise Skip(f"peft is not importable ({err}); pip install peft==0.21.2") from None
    cfg = run.cfg
    adapted = targets(cfg.lora_targets, [name for name, _ in run.model.named_modules()], cfg.model)
    for param in run.model.parameters():
        param.requires_grad_(False)
    config = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                        target_modules=list(adapted))
    inject_adapter_in_model(config, run.model)
    for name, param in run.model.named_parameters():
        param.requires_grad_(ADAPTER_PREFIX in name)
    run.adapter = (f"lora r={cfg.lora_rank} alpha={cfg.lora_alpha:g} dropout={cfg.lora_dropout:g} "
                   f"on {','.join(adapted)}")
