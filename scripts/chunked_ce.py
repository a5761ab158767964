"""chunked_ce: the output projection and cross-entropy in chunks of tokens, never the whole logits.

The loss of a language model starts from (batch x seq x vocab) logits: GPT-2 at B=16, T=1024
holds 3.1 GiB of them in fp32, more for the softmax's output backward needs. Here each of 8
chunks of tokens is projected and scored under activation checkpointing: forward keeps only
the hidden states, backward recomputes one chunk's logits at a time (the projection runs
twice: a little slower). CHUNK_LOGITS=keep runs torchtune's way instead: the projection once,
every chunk's logits (eager: their fp32 log-probabilities) kept for backward, only the fp32
upcast one chunk at a time. Pays where the vocabulary is
large beside the model (Llama 3's 128k). A model from a file computes its own loss and is skipped.
"""

from utils import techniques as t
from utils.measure.train import main


def setup(run):
    t.strict_fp32(run)
    t.chunked_cross_entropy(run)
    t.adamw(run)


if __name__ == "__main__":
    main(setup)
