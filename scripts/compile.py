"""compile: torch.compile the model, in COMPILE_MODE (default: "default").

TorchDynamo traces the model into a graph and Inductor generates fused kernels for it
(layernorm, GELU, residual adds and softmax stop round-tripping through memory), and saves
Python overhead per op. COMPILE_MODE=reduce-overhead adds CUDA graphs (fewer launches: pays
when the host is the limit), max-autotune benchmarks kernel choices (long compiles), and
max-autotune-no-cudagraphs does that without graphs; the mode is a column. The cost is
compile time in the first steps: it lands in the warm-up phase, timed and reported apart
from the measured steps. The optimizer step is not compiled.
"""

from utils import techniques as t
from utils.measure.train import main


def setup(run):
    t.strict_fp32(run)
    t.adamw(run)
    t.compile_model(run)


if __name__ == "__main__":
    main(setup)
