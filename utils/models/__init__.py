"""Models: the suite's GPT and LSTM behind one interface (`Costed`), and one table of presets.

Job: build the model a run trains, and answer what generic code may ask of it (parameters,
FLOPs per token, blocks, attention switch and probe: utils/models/costed.py). Every caller
that needs a model (training, the planner, tests) builds it with `build_model` below.
May import: torch and utils.checks only.

This module itself is plain data and does not import torch (the report reads the table to
name a run's architecture without it); `build_model` imports the architectures when called.
"""

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


def arch(preset):
    """'gpt' or 'lstm'."""
    return "lstm" if preset in LSTM_SIZED_LIKE else "gpt"


def default_shape(preset):
    """(batch, seq) the preset runs at when BATCH / SEQ are auto."""
    _, batch, seq = PRESETS[preset]
    return batch, seq


def default_layers(preset):
    return PRESETS[preset][0]["n_layer"]


def vocab_size(preset):
    return PRESETS[preset][0]["vocab_size"]


def build_model(preset, seq, mlp="gelu", layers=None):
    """The model of `preset` at sequence length `seq` (layers: None for the preset's).
    Raises ValueError for an MLP the architecture does not have."""
    # note: imported here so that reading the table above never loads torch
    from utils.models.gpt import GPT, MLP_CLASSES, GPTConfig
    from utils.models.lstm import LSTM

    config = PRESETS[preset][0]
    layers = layers or config["n_layer"]
    if arch(preset) == "lstm":
        if mlp != "gelu":
            raise ValueError(f"the LSTM has no MLP to make {mlp}: {mlp} is a transformer block's change")
        return LSTM(layers, config["n_embd"], config["vocab_size"])
    if mlp not in MLP_CLASSES:
        raise ValueError(f"unknown mlp {mlp!r}; one of {', '.join(MLP_CLASSES)}")
    return GPT(GPTConfig(block_size=seq, mlp=mlp, **{**config, "n_layer": layers}))
