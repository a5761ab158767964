"""A model the suite did not write (a Hugging Face causal LM from its config, or any nn.Module
from a file) behind the same interface as the suite's own, never hand-written per model:

- parameters counted (tied weights once); FLOPs per token measured (flops.py), not assumed;
- blocks found: the first of KNOWN_BLOCKS the model has (at its root or under it), else its
  largest nn.ModuleList, or
  the ModuleList BLOCKS= names. `blocks` is that ModuleList itself, inside the model, so
  checkpointing replaces its items in place and FSDP2 shards them;
- attention switched through what the model offers: a transformers model's
  attn_implementation (eager, sdpa, flash_attention_2 where installed); a model with no switch
  has none, and the attention techniques skip saying so. The probe runs the model's own
  forward, so the kernel found is the one its attention really calls;
- forward(idx, targets) -> (logits, loss): a transformers model is called with input_ids and
  the loss is the suite's (cross-entropy of the logits against targets, which the data already
  shifted: never labels=, which would shift again); a file's module returns its own loss.
"""

import logging

import torch
import torch.nn as nn
import torch.nn.functional as F

from utils import checks
from utils.models import file, flops, hf, moe
from utils.models.costed import Costed
from utils.models.loss import in_fp32
from utils.models.spec import Checked

KNOWN_BLOCKS = ("transformer.h", "model.layers", "gpt_neox.layers", "transformer.blocks", "model.decoder.layers",
                "transformer.layers", "layers", "blocks", "h")
# the suite's attention names <-> transformers' attn_implementation
HF_ATTENTION = {"manual": "eager", "sdpa": "sdpa", "flash_attn": "flash_attention_2"}
SUITE_ATTENTION = {v: k for k, v in HF_ATTENTION.items()}
# config fields by which transformers' causal LMs scale their logits after the output projection (Gemma 2's softcap,
# Cohere's logit_scale, Granite's logits_scaling, FalconH1's lm_head_multiplier): a chunked loss would not
LOGIT_SCALES = ("final_logit_softcapping", "logit_scale", "logits_scaling", "lm_head_multiplier")


class ContractError(ValueError):
    """The module's forward does not return what the suite can train on."""


def find_blocks(module, path=None):
    """(path, how) of the blocks' ModuleList: BLOCKS' `path`, a known path, or the largest
    ModuleList by parameters; ("", "none") where the model has none. Raises ValueError for a
    BLOCKS that names nothing, or no ModuleList."""
    lists = {name: m for name, m in module.named_modules() if isinstance(m, nn.ModuleList) and len(m)}
    if path:
        try:
            found = module.get_submodule(path)
        except AttributeError:
            found = None
        if not isinstance(found, nn.ModuleList):
            what = "names nothing" if found is None else f"is a {type(found).__name__}, not an nn.ModuleList"
            raise ValueError(f"BLOCKS={path} {what} in the model (its ModuleLists: {', '.join(lists) or 'none'})")
        return path, "BLOCKS"
    # a known path at the root, or under it (a transformers model inside the user's module)
    known = next((n for p in KNOWN_BLOCKS for n in sorted(lists, key=len) if n == p or n.endswith(f".{p}")), None)
    if known:
        return known, ""
    if not lists:
        return "", "none"
    largest = max(lists, key=lambda n: (sum(p.numel() for p in lists[n].parameters()), len(lists[n])))
    return largest, "largest ModuleList"


def logits_and_loss(out):
    """(logits or None, loss) from what a module's forward returned; raises ContractError."""
    if isinstance(out, (tuple, list)) and len(out) == 2:
        logits, loss = out
    elif hasattr(out, "loss"):
        logits, loss = getattr(out, "logits", None), out.loss
    else:
        logits, loss = None, out
    if not (isinstance(loss, torch.Tensor) and loss.dim() == 0 and loss.is_floating_point()):
        got = type(loss).__name__ if not isinstance(loss, torch.Tensor) else f"a tensor of shape {tuple(loss.shape)}"
        raise ContractError(f"its forward(idx, targets) gave {got} as the loss; {file.CONTRACT}")
    return logits, loss


class Foreign(Costed):
    flops_source = "measured"
    mlp_name = "own"

    def __init__(self, module, spec, layers, blocks=None):
        super().__init__()
        self.module = module
        self.spec, self.layers = spec, layers
        self._calls_hf = spec.arch == "hf"
        self._blocks_path, self._found = find_blocks(module, blocks)
        self._blocks_given = blocks
        switch = hf.switchable(module)
        self._switch = next((n for n, m in module.named_modules() if m is switch), None)

    @property
    def blocks(self):
        return self.module.get_submodule(self._blocks_path) if self._blocks_path else nn.ModuleList()

    @property
    def blocks_text(self):
        if not self._blocks_path:
            return "none (no nn.ModuleList)"
        how = f"; {self._found}" if self._found else ""
        return f"{self._blocks_path} ({len(self.blocks)}{how})"

    def _hf(self):
        return None if self._switch is None else self.module.get_submodule(self._switch)

    @property
    def attention(self):
        model = self._hf()
        if model is None:
            return "own"
        kind = model.config._attn_implementation
        return SUITE_ATTENTION.get(kind, kind)

    def set_attention(self, kind):
        model = self._hf()
        if model is None:
            raise ValueError(f"{self.spec.name} has no attention switch the suite can flip (a transformers model's "
                             f"attn_implementation), so {kind} attention cannot apply to it")
        try:
            model.set_attn_implementation(HF_ATTENTION[kind])
        except (ImportError, ValueError) as err:
            if kind != "flash_attn":
                raise ValueError(f"{self.spec.name} cannot switch to {HF_ATTENTION[kind]} attention: "
                                 f"{str(err).splitlines()[0][:160]}") from None
            model.set_attn_implementation("sdpa")  # flash-attn's kernels refused: SDPA, whose kernel is probed

    def attention_probe(self, batch, seq, device):
        if self._hf() is None:
            return None
        idx = torch.zeros(batch, seq, dtype=torch.long, device=device)
        devices = [torch.cuda.current_device()] if idx.is_cuda else []

        def probe():
            # the model's own forward, in training mode (dropout decides the kernel too), without
            # a graph, and without moving the random state training will draw from
            self.train()
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                self(idx, idx)

        return probe

    def flops_per_token(self, seq):
        key = (self.spec.name, seq, self.layers)
        return flops.per_token(key, lambda: build(self.spec, seq, layers=self.layers, blocks=self._blocks_given), seq)

    def host_synced(self):
        return moe.host_synced(self.module)

    def chunks_unsupported(self):
        if not self._calls_hf:
            return f"{self.spec.name} computes its own loss in its forward: the suite cannot chunk it"
        config = self.module.config
        if any(getattr(config, name, None) for name in LOGIT_SCALES):
            return f"{self.spec.name} scales its logits after the output projection: the chunks would not"
        return None

    def forward(self, idx, targets):
        if self._calls_hf:
            # targets are the next tokens already (utils/measure/data.py): no shift here
            if self.loss_chunks > 1:  # the decoder's last hidden state, the output projection applied in chunks
                hidden = self.module.base_model(input_ids=idx, use_cache=False).last_hidden_state
                return self.loss(hidden, self.module.get_output_embeddings(), targets)
            logits = self.module(input_ids=idx, use_cache=False).logits  # (B, T, vocab)
            return logits, F.cross_entropy(in_fp32(logits).view(-1, logits.size(-1)), targets.reshape(-1))
        try:
            return logits_and_loss(self.module(idx, targets))
        except ContractError as err:
            raise ValueError(f"MODEL={self.spec.name}: {err}") from None


def build(spec, seq, mlp="gelu", layers=None, blocks=None):
    """The foreign model of `spec`, wrapped. Raises ValueError for a gated MLP (the suite's
    change to its own GPT blocks) and for BLOCKS naming nothing; checks.BadInput for a model
    that cannot be built."""
    if mlp != "gelu":
        raise ValueError(f"{spec.name} brings its own MLP: {mlp} is a change to the suite's GPT blocks, "
                         "not to a model from hf: or a file")
    if spec.arch == "hf":
        return Foreign(hf.build_module(spec, layers), spec, layers, blocks)
    return Foreign(file.build_module(spec, seq), spec, None, blocks)  # a file's build sets its own depth


def _vocab(model, logits):
    """A file's module's vocabulary: its config's, its first embedding's, or its logits' width."""
    config = getattr(model.module, "config", None)
    if isinstance(getattr(config, "vocab_size", None), int):
        return config.vocab_size
    embedding = next((m for m in model.module.modules() if isinstance(m, nn.Embedding)), None)
    if embedding is not None:
        return embedding.num_embeddings
    return logits.size(-1) if isinstance(logits, torch.Tensor) and logits.dim() == 3 else None


CHECKED = {}  # (model, seq, layers, blocks) -> Checked: a process checks each configuration once


def check(spec, seq, layers, blocks=None):
    """Build `spec` once on fake tensors, run forward + backward of its loss there (its FLOPs
    counted, kept for the run's rows): a Checked, or checks.BadInput in one line."""
    key = (spec.name, seq, layers, blocks)
    if key not in CHECKED:
        CHECKED[key] = _check(spec, seq, layers, blocks)
    return CHECKED[key]


def _check(spec, seq, layers, blocks):
    with flops.unset_fake_temporarily(), flops.FakeTensorMode(allow_non_fake_inputs=True):
        try:
            model = build(spec, seq, layers=layers, blocks=blocks)
        except checks.BadInput:
            raise
        except ValueError as err:  # BLOCKS naming nothing
            raise checks.BadInput(f"MODEL={spec.name}: {err}") from None
        try:  # a failing op's traceback, which the fake mode logs, held back: the error says it in one line
            with hf.quiet("torch._subclasses.fake_tensor", level=logging.CRITICAL):
                per_token, logits, _ = flops.count(model, seq)
        except Exception as err:  # noqa: BLE001 - the model's own code, on fake tensors
            said = str(err).strip().splitlines()[0] if str(err).strip() else ""
            if isinstance(err, ValueError) and said.startswith("MODEL="):  # the forward's contract
                raise checks.BadInput(said) from None
            raise checks.BadInput(f"MODEL={spec.name}: forward + backward at SEQ={seq} failed on fake tensors, where "
                                  f"the suite measures FLOPs and plans memory ({file.first_line(err)})") from None
    flops.MEASURED[(spec.name, seq, layers)] = per_token
    vocab = spec.vocab_size or _vocab(model, logits)
    depth = layers if spec.arch == "hf" else (len(model.blocks) or None)
    return Checked(spec, vocab, depth, model.num_params(), _dropout(model.module))


def _dropout(module):
    """The largest dropout probability in `module`: nn.Dropout's p, or the float attention
    dropout transformers' attention modules pass to their kernel."""
    ps = [m.p if isinstance(m, nn.Dropout) else getattr(m, "attention_dropout", 0.0) for m in module.modules()]
    return max([float(p) for p in ps if isinstance(p, (int, float))], default=0.0)
