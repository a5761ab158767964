"""Models: the suite's GPT and LSTM, Hugging Face causal LMs built from their config, and any
nn.Module from a file, all behind one interface (`Costed`), with one resolution path.

Job: say what a MODEL names (`resolve`: spec.py, no torch), check it at a run's shape
(`check`), build the model a run trains (`build_model`), and answer what generic code may ask
of it (parameters, FLOPs per token, blocks, attention switch and probe: utils/models/costed.py).
A foreign model (hf:, file) is wrapped by foreign.py: parameters counted, FLOPs measured on
fake tensors (flops.py), blocks found, attention switched through what the model offers.
Every caller that needs a model (training, the planner, tests) builds it with `build_model`.
May import: torch, transformers and utils.checks only.

This module itself is plain data and does not import torch (the report reads the table to
name a run's architecture without it); `build_model` and `check` import what they need.
"""

import functools

from utils import checks
from utils.models.spec import FILE_MODEL, HF, SHIPPED, Checked, Spec, file_spec, form, hf_spec

# name -> (architecture kwargs, default batch, default seq). gpt2* follow nanoGPT (vocab
# padded 50257 -> 50304 so the lm_head matmul tiles evenly); an lstm* preset takes the width,
# vocabulary, depth, batch and seq of the GPT preset it is sized like
GPT_PRESETS = {
    "tiny": (dict(n_layer=2, n_head=4, n_embd=128, vocab_size=256), 4, 128),
    "small": (dict(n_layer=6, n_head=6, n_embd=384, vocab_size=256), 16, 256),
    "gpt2": (dict(n_layer=12, n_head=12, n_embd=768, vocab_size=50304), 16, 1024),
    "gpt2-medium": (dict(n_layer=24, n_head=16, n_embd=1024, vocab_size=50304), 8, 1024),
    "gpt2-large": (dict(n_layer=36, n_head=20, n_embd=1280, vocab_size=50304), 4, 1024),
    "gpt2-xl": (dict(n_layer=48, n_head=25, n_embd=1600, vocab_size=50304), 4, 256),
    # Cerebras-GPT-2.7B's shape (context 2048) with GPT-2's padded vocabulary
    "gpt-2.7b": (dict(n_layer=32, n_head=32, n_embd=2560, vocab_size=50304), 4, 2048),
}
LSTM_SIZED_LIKE = {"lstm": "tiny", "lstm-small": "small", "lstm-gpt2": "gpt2"}
PRESETS = {**GPT_PRESETS, **{name: GPT_PRESETS[like] for name, like in LSTM_SIZED_LIKE.items()}}

__all__ = ["FILE_MODEL", "HF", "PRESETS", "SHIPPED", "Checked", "Spec", "arch", "build_model", "check", "resolve"]


def arch(name):
    """gpt, lstm, hf or file, from the name alone (never builds, never reads a file)."""
    if name in PRESETS:
        return "lstm" if name in LSTM_SIZED_LIKE else "gpt"
    return form(name) or "unknown"


def label(name):
    """How a table names a run's architecture: GPT or LSTM for the suite's, the model itself otherwise."""
    return arch(name).upper() if name in PRESETS else str(name)


def known():
    """What MODEL may be, in one line (for refusals and help)."""
    return (f"presets: {', '.join(PRESETS)}; hf:<name> (shipped: {', '.join(SHIPPED)}; or a config.json, "
            "or a hub id where the hub is reachable); or path/to/file.py:function")


@functools.cache
def resolve(text):
    """MODEL -> its Spec, or checks.BadInput in one line."""
    if text in PRESETS:
        config, batch, seq = PRESETS[text]
        return Spec(text, arch(text), config["vocab_size"], batch, seq, config["n_layer"])
    if form(text) == "hf":
        return hf_spec(text)
    if form(text) == "file":
        return file_spec(text)
    raise checks.BadInput(f"unknown MODEL {text!r}; {known()}")


def resolve_all(names, setting):
    """Each of `names` (a setting's list of models), canonical; refused in one line naming the setting."""
    unknown = [name for name in names if arch(name) == "unknown"]
    if unknown or not names:
        raise checks.BadInput(f"{setting}: unknown model {' '.join(unknown) or '(none given)'}; {known()}")
    try:
        return list(dict.fromkeys(resolve(name).name for name in names))
    except checks.BadInput as err:
        raise checks.BadInput(f"{setting}: {err}") from None


def default_shape(model):
    """(batch, seq) the model runs at when BATCH / SEQ are auto."""
    spec = resolve(model)
    return spec.batch, spec.seq


def default_layers(model):
    return resolve(model).layers


def vocab_size(model):
    return resolve(model).vocab_size


def check(model, seq, layers=None, blocks=None):
    """MODEL at sequence length `seq`, depth `layers` (None: its own) and BLOCKS (None: found):
    a Checked, or checks.BadInput in one line. A foreign model is built once on fake tensors to
    check it (its forward returns a loss, BLOCKS names a ModuleList) and to measure its FLOPs."""
    spec = resolve(model)
    if spec.context is not None and seq > spec.context:
        raise checks.BadInput(f"SEQ={seq} is longer than {spec.name}'s context ({spec.context} positions in its "
                              f"config): give SEQ={spec.context} or less")
    if not spec.foreign:
        if blocks:
            raise checks.BadInput(f"BLOCKS={blocks}: the suite's {spec.name} knows its blocks; BLOCKS names them "
                                  "in a model from hf: or a file")
        return Checked(spec, spec.vocab_size, layers or spec.layers)
    from utils.models import foreign  # note: here, so that resolving a name never loads torch

    # a file's build(seq) sets its own depth: `layers` (the blocks it was found to have) is not asked
    return foreign.check(spec, seq, (layers or spec.layers) if spec.arch == "hf" else None, blocks)


def count_params(model, seq, layers=None, blocks=None):
    """Its parameters as the model's own num_params() counts them (tied weights once): the suite's
    models built on the meta device (no memory, any size), a foreign one as check() builds it."""
    if resolve(model).foreign:
        return check(model, seq, layers, blocks).n_params
    import torch

    with torch.device("meta"):
        return build_model(model, seq, layers=layers).num_params()


def check_layers(model, layers):
    """Refuse LAYERS for a model that builds its own depth (a module from a file)."""
    if layers and arch(model) == "file":
        raise checks.BadInput(f"LAYERS={layers}: MODEL={model} builds its own depth (build(seq) takes no "
                              "layers); LAYERS sets the depth of the presets and hf: configs")


def build_model(model, seq, mlp="gelu", layers=None, blocks=None):
    """The model `model` names at sequence length `seq` (layers: None for its own; blocks: the
    BLOCKS path of a foreign model, None to find them). Raises ValueError for an MLP the
    architecture does not have."""
    spec = resolve(model)
    if spec.foreign:
        from utils.models import foreign

        return foreign.build(spec, seq, mlp=mlp, layers=layers or spec.layers, blocks=blocks)
    # note: imported here so that reading the table above never loads torch
    from utils.models.gpt import GPT, MLP_CLASSES, GPTConfig
    from utils.models.lstm import LSTM

    config = PRESETS[model][0]
    layers = layers or config["n_layer"]
    if spec.arch == "lstm":
        if mlp != "gelu":
            raise ValueError(f"the LSTM has no MLP to make {mlp}: {mlp} is a transformer block's change")
        return LSTM(layers, config["n_embd"], config["vocab_size"])
    if mlp not in MLP_CLASSES:
        raise ValueError(f"unknown mlp {mlp!r}; one of {', '.join(MLP_CLASSES)}")
    return GPT(GPTConfig(block_size=seq, mlp=mlp, **{**config, "n_layer": layers}))
