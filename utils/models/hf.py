"""A Hugging Face causal LM built from its config: the architecture transformers builds for
that model_type, with fresh random weights (transformers' own initialisation), in fp32, with
eager attention (the suite's baseline writes attention out by hand). No weights are ever
downloaded: the config is shipped (utils/models/hf_configs), local, or fetched alone.
"""

import contextlib
import logging

import torch

from utils import checks
from utils.models import moe

# where a causal LM's self-attention is not causal, its modules say so (BERT-style encoders
# unless is_decoder); cross-attention is not self-attention
CROSS = "cross"


@contextlib.contextmanager
def quiet(*names, level=logging.ERROR):
    """These loggers' records below `level` held back while an import runs, their levels restored
    after (default: transformers'. It imports torchao for its quantizers, which logs kernels it
    cannot load on this machine, and torch warns about torchao's pytree registrations: noise for a
    run that quantizes nothing)."""
    names = names or ("torchao", "torch.utils._pytree", "transformers")
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(level)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def hf_config(spec, layers):
    """The transformers config of `spec` at depth `layers` (num_hidden_layers)."""
    import transformers
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    fields = dict(spec.config)
    model_type = fields.pop("model_type")
    if model_type not in CONFIG_MAPPING_NAMES:
        raise checks.BadInput(f"MODEL={spec.name}: model_type {model_type!r} is not one transformers "
                              f"{transformers.__version__} knows")
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise checks.BadInput(f"MODEL={spec.name}: model_type {model_type!r} is not a causal language model "
                              "(transformers has no AutoModelForCausalLM for it): the suite trains next-token "
                              "prediction")
    for dropped in ("torch_dtype", "dtype"):  # the suite keeps fp32 weights; autocast is a technique
        fields.pop(dropped, None)
    try:
        config = AutoConfig.for_model(model_type, **fields)
    except Exception as err:  # noqa: BLE001 - transformers' own validation of the values (heads dividing the width)
        raise checks.BadInput(f"MODEL={spec.name}: transformers refuses its config ({_one_line(err)})") from None
    config.num_hidden_layers = layers
    layer_types = getattr(config, "layer_types", None)
    if isinstance(layer_types, list) and layer_types and len(layer_types) != layers:
        config.layer_types = (layer_types * layers)[:layers]  # per-layer attention kinds, repeated
    config.use_cache = False
    return config


def _one_line(err):
    """What an exception says, on one line (200 characters at most), or its type where it says nothing."""
    return " ".join(str(err).split())[:200] or type(err).__name__


def plan_as_run():
    """transformers decides whether a batch packs several sequences by reading its position
    ids; on fake tensors (the planner, the FLOP count) it cannot read them and builds a full
    B x 1 x T x T mask per layer, which also stops SDPA's flash kernel. The suite's batches hold
    one sequence per row (positions 0 .. T-1), which is what a real run finds: let fake tensors
    find it too. Real tensors and torch.compile's tracing keep transformers' own check."""
    from torch._subclasses.fake_tensor import is_fake
    from transformers import masking_utils

    found = masking_utils.find_packed_sequence_indices
    if getattr(found, "one_sequence_per_row", False):
        return

    def find(position_ids):
        if not torch.compiler.is_compiling() and is_fake(position_ids):
            return None
        return found(position_ids)

    find.one_sequence_per_row = True
    masking_utils.find_packed_sequence_indices = find


def build_module(spec, layers):
    """The causal LM of `spec` at depth `layers`: fresh random weights, fp32, eager attention.
    Raises checks.BadInput for a config transformers cannot build as a causal LM."""
    with quiet():
        from transformers import AutoModelForCausalLM

        moe.count_transformers_fallback()

        config = hf_config(spec, layers)
        plan_as_run()
        try:
            model = AutoModelForCausalLM.from_config(config, attn_implementation="eager", dtype=torch.float32)
        except Exception as err:  # noqa: BLE001 - transformers' code on the config's values (a pad id past the vocabulary)
            raise checks.BadInput(f"MODEL={spec.name}: transformers could not build it ({_one_line(err)})") from None
    bidirectional = [name for name, m in model.named_modules()
                     if getattr(m, "is_causal", None) is False and CROSS not in name]
    if bidirectional:
        raise checks.BadInput(f"MODEL={spec.name}: its self-attention is bidirectional ({bidirectional[0]}.is_causal "
                              "is False): not a causal LM; an encoder's config needs is_decoder: true")
    return model


def switchable(module):
    """The transformers model inside `module` whose attention can be switched, or None."""
    return next((m for m in module.modules() if hasattr(m, "set_attn_implementation") and hasattr(m, "config")),
                None)
