"""cudagraphs: the whole training step captured once as a CUDA graph, then replayed.

Forward, backward and the optimizer step (AdamW with capturable=True, so its step count
stays on the GPU) are recorded into one graph against static input buffers; each step then
copies the batch in and launches the graph: one launch instead of thousands, no Python or
launch overhead. CUDA events cannot sit inside a graph, so the replay is timed whole and the
forward/backward/optimizer columns are left blank. CUDA only (skipped elsewhere). Pays when
the GPU waits on the host (small models, small batches); not when the GPU is the limit.
"""

from utils import techniques as t
from utils.measure.train import main


def setup(run):
    t.strict_fp32(run)
    t.adamw(run)
    t.cuda_graphs(run)


if __name__ == "__main__":
    main(setup)
