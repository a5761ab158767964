"""What MODEL names, resolved without torch: a `Spec` (the name rows carry, the architecture,
vocabulary, default shape and depth, the context it takes), for the suite's presets, a
Hugging Face config (`hf:`) and a module from a file (`path/to/file.py:function`).

Stdlib only (json, pathlib): make help, the report and the grid's table name models with it.
A hub name is the one case that may reach the network, for its config.json alone.
"""

import json
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from utils import checks

CONFIGS = Path(__file__).resolve().parent / "hf_configs"
HF = "hf:"
FILE_MODEL = re.compile(r"^(?P<path>.+\.py):(?P<function>[A-Za-z_]\w*)$")
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
HUB_TIMEOUT_S = 3  # to decide that the hub is out of reach, before huggingface_hub's retries

# the configs the suite ships: name -> (where the config.json was published, hub id, default batch, seq,
# what it is). The tiny ones are the suite's own, for tests and a quick `make all` on a CPU.
SHIPPED = {
    "gpt2": ("https://huggingface.co/openai-community/gpt2/blob/main/config.json", "openai-community/gpt2",
             16, 1024, "GPT-2 124M (OpenAI); the suite's gpt2 preset's shape"),
    "gpt2-xl": ("https://huggingface.co/openai-community/gpt2-xl/blob/main/config.json", "openai-community/gpt2-xl",
                4, 256, "GPT-2 XL 1.5B (OpenAI)"),
    "cerebras-gpt-2.7b": ("https://huggingface.co/cerebras/Cerebras-GPT-2.7B/blob/main/config.json",
                          "cerebras/Cerebras-GPT-2.7B", 4, 2048, "Cerebras-GPT 2.7B (a GPT-2 architecture)"),
    "smollm2-135m": ("https://huggingface.co/HuggingFaceTB/SmolLM2-135M/blob/main/config.json",
                     "HuggingFaceTB/SmolLM2-135M", 8, 1024, "SmolLM2 135M: Llama-style (RMSNorm, RoPE, SwiGLU, GQA)"),
    "llama-3.1-8b": ("https://huggingface.co/meta-llama/Llama-3.1-8B/blob/main/config.json", "meta-llama/Llama-3.1-8B",
                     2, 2048, "Llama 3.1 8B (Meta): RMSNorm, RoPE (llama3 scaling), SwiGLU, 8 KV heads; hub-gated"),
    "llama-3.2-1b": ("https://huggingface.co/meta-llama/Llama-3.2-1B/blob/main/config.json", "meta-llama/Llama-3.2-1B",
                     4, 2048, "Llama 3.2 1B (Meta): Llama 3's architecture, tied embeddings; gated on the hub"),
    "llama-3.2-3b": ("https://huggingface.co/meta-llama/Llama-3.2-3B/blob/main/config.json", "meta-llama/Llama-3.2-3B",
                     2, 4096, "Llama 3.2 3B (Meta): Llama 3's architecture, tied embeddings; gated on the hub"),
    "mistral-7b": ("https://huggingface.co/mistralai/Mistral-7B-v0.1/blob/main/config.json",
                   "mistralai/Mistral-7B-v0.1", 2, 2048,
                   "Mistral 7B v0.1: Llama-style, 8 KV heads, a 4096-token sliding window"),
    "qwen2.5-7b": ("https://huggingface.co/Qwen/Qwen2.5-7B/blob/main/config.json", "Qwen/Qwen2.5-7B", 2, 2048,
                   "Qwen2.5 7B: Llama-style with q, k, v biases, 4 KV heads, a 152k vocabulary"),
    "mixtral-8x7b": ("https://huggingface.co/mistralai/Mixtral-8x7B-v0.1/blob/main/config.json",
                     "mistralai/Mixtral-8x7B-v0.1", 1, 2048,
                     "Mixtral 8x7B: Mistral's blocks, each MLP 8 experts, 2 a token (46.7B, 12.9B active)"),
    "qwen3-30b-a3b": ("https://huggingface.co/Qwen/Qwen3-30B-A3B/blob/main/config.json", "Qwen/Qwen3-30B-A3B", 2, 2048,
                      "Qwen3 30B-A3B: 128 experts a block, 8 a token (30.5B, 3.3B active), q and k normed"),
    "gpt2-tiny": ("the suite's: GPT-2's architecture at 2 layers, width 64, vocabulary 256", "", 4, 128,
                  "for tests and CPU runs"),
    "llama-tiny": ("the suite's: Llama's architecture at 2 layers, width 64, vocabulary 256, 2 KV heads", "", 4, 128,
                   "for tests and CPU runs"),
    "mixtral-tiny": ("the suite's: Mixtral's architecture at 2 layers, width 64, vocabulary 256, 4 experts, 2 a token",
                     "", 4, 128, "for tests and CPU runs"),
}
BY_HUB_ID = {hub.lower(): name for name, (_, hub, *_) in SHIPPED.items() if hub}
LOCAL_BATCH, LOCAL_SEQ = 4, 1024  # a config from elsewhere: seq capped at its context


@dataclass(frozen=True)
class Spec:
    name: str  # what rows carry in `model`
    arch: str  # gpt, lstm, hf or file
    vocab_size: int = None  # None: known once built (a module from a file)
    batch: int = 4
    seq: int = 128
    layers: int = None  # the default depth (None: a file's module brings its own)
    context: int = None  # the longest sequence it takes (None: any)
    source: str = ""  # hf: the config.json read; file: the file
    config: dict = field(default=None, compare=False, repr=False)  # hf: the config's fields
    function: str = ""  # file: the function that builds it

    @property
    def foreign(self):
        return self.arch in ("hf", "file")


def form(text):
    """hf or file, from the form of a MODEL that is not a preset; "" for neither."""
    if str(text).startswith(HF):
        return "hf"
    return "file" if FILE_MODEL.match(str(text)) else ""


@dataclass(frozen=True)
class Checked:
    """A model checked at a run's shape: what the run config takes from it."""

    spec: Spec
    vocab_size: int  # None where a module from a file shows none (no nn.Embedding)
    layers: int  # the depth that will be built (a file's module: its blocks found)
    n_params: int = None  # known once built (foreign models are built on fake tensors to check them)
    dropout: float = 0.0  # the largest dropout probability its training forward draws masks with


def file_spec(text):
    match = FILE_MODEL.match(text)
    path = Path(match["path"])
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise checks.BadInput(f"MODEL={text}: {path} {what}; a model from a file is MODEL=path/to/file.py:function")
    return Spec(text, "file", source=str(path), function=match["function"])


def _first(config, *keys):
    return next((config[k] for k in keys if isinstance(config.get(k), int)), None)


def _read_config(text, path):
    try:
        config = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise checks.BadInput(f"MODEL={text}: {path} is not a readable JSON config ({err})") from None
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise checks.BadInput(f"MODEL={text}: {path} has no model_type: not a Hugging Face config.json")
    return config


def hf_spec_from(text, path, batch=None, seq=None):
    config = _read_config(text, path)
    vocab = _first(config, "vocab_size", "n_vocab")
    layers = _first(config, "num_hidden_layers", "n_layer", "num_layers", "n_layers")
    if vocab is None or layers is None:
        missing = "vocab_size" if vocab is None else "num_hidden_layers (or n_layer)"
        raise checks.BadInput(f"MODEL={text}: {path} gives no {missing}: the suite needs it to build the model")
    context = _first(config, "n_positions", "max_position_embeddings", "n_ctx")
    for name, value in (("vocabulary", vocab), ("layer count", layers), ("context", context)):
        if value is not None and value < 1:
            raise checks.BadInput(f"MODEL={text}: {path} gives a {name} of {value}: a model needs at least 1")
    seq = seq or min(LOCAL_SEQ, context or LOCAL_SEQ)
    return Spec(text, "hf", vocab, batch or LOCAL_BATCH, seq, layers, context, str(path), config)


def _hub_reachable(endpoint):
    host = urlparse(endpoint).hostname
    try:
        socket.create_connection((host, 443), timeout=HUB_TIMEOUT_S).close()
        return True
    except OSError:
        return False


def _from_hub(text, hub_id):
    """The cached or downloaded config.json of a hub id (config only: never weights)."""
    shipped = ", ".join(SHIPPED)
    offline = (f"offline, pass a local config: MODEL=hf:path/to/config.json (or a folder holding one); "
               f"shipped: {shipped}")
    if not HUB_ID.match(hub_id):
        raise checks.BadInput(f"MODEL={text}: not a shipped config, a config.json or a hub id (owner/name); {offline}")
    try:
        import huggingface_hub
    except ImportError:
        raise checks.BadInput(f"MODEL={text}: huggingface_hub is not installed to fetch its config; "
                              f"{offline}") from None
    cached = huggingface_hub.try_to_load_from_cache(hub_id, "config.json")
    if isinstance(cached, str):
        return cached
    # HF_HUB_OFFLINE and HF_ENDPOINT as huggingface_hub itself reads them
    if huggingface_hub.constants.HF_HUB_OFFLINE or not _hub_reachable(huggingface_hub.constants.ENDPOINT):
        raise checks.BadInput(f"MODEL={text}: {hub_id} is not a shipped config and the Hugging Face hub is out of "
                              f"reach for its config.json; {offline}")
    try:
        return huggingface_hub.hf_hub_download(hub_id, "config.json")
    except Exception as err:  # noqa: BLE001 - not found, gated, network: one line either way
        first = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise checks.BadInput(f"MODEL={text}: could not fetch {hub_id}'s config.json ({first}); {offline}") from None


def hf_spec(text):
    rest = text[len(HF):]
    name = BY_HUB_ID.get(rest.lower(), rest)
    if name in SHIPPED:
        _, _, batch, seq, _ = SHIPPED[name]
        return hf_spec_from(f"{HF}{name}", CONFIGS / f"{name}.json", batch, seq)
    path = Path(rest)
    if path.is_dir() and (path / "config.json").is_file():
        return hf_spec_from(text, path / "config.json")
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise checks.BadInput(f"MODEL={text}: {path} does not exist")
        return hf_spec_from(text, path)
    return hf_spec_from(text, _from_hub(text, rest))
