"""Every model preset, GPT and LSTM, in one table: MODEL= names one of them, LAYERS= sets
its layer count (seed 004's 1, 2, 4). Generic code builds models here and asks them only the
Costed interface (utils/model.py)."""

from utils.lstm import SIZED_LIKE, build_lstm
from utils.model import MLPS
from utils.model import PRESETS as GPT_PRESETS
from utils.model import build_model as build_gpt

# name -> (architecture kwargs, default batch, default seq); an LSTM takes its GPT preset's
PRESETS = {**GPT_PRESETS, **{name: GPT_PRESETS[like] for name, like in SIZED_LIKE.items()}}


def arch(preset):
    return "lstm" if preset in SIZED_LIKE else "gpt"


def default_layers(preset):
    return PRESETS[preset][0]["n_layer"]


def vocab_size(preset):
    return PRESETS[preset][0]["vocab_size"]


def build_model(preset, seq, mlp="gelu", layers=None):
    """The model of `preset` at sequence length `seq` (layers: None for the preset's)."""
    if arch(preset) == "lstm":
        if mlp != "gelu":
            raise ValueError(f"the LSTM has no MLP to make {mlp}: {mlp} is a transformer block's change")
        return build_lstm(preset, layers)
    if mlp not in MLPS:
        raise ValueError(f"unknown mlp {mlp!r}; one of {', '.join(MLPS)}")
    return build_gpt(preset, seq, mlp=mlp, layers=layers)
