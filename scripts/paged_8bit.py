"""paged_8bit: bitsandbytes PagedAdamW8bit, 8-bit AdamW state in CUDA unified memory.

As 8bit (two uint8 moments per parameter plus per-block scales), and the state is paged: the
driver moves it to host memory when the GPU runs short, so a memory spike slows a step
instead of ending the run (torchtune's single-GPU full fine-tunes use it). Unified memory is
outside PyTorch's allocator: the run's allocated and reserved figures never count the state,
its device total does while it is resident. On a CPU bitsandbytes uses ordinary buffers.
"""

from utils import techniques as t
from utils.measure.train import main


def setup(run):
    t.strict_fp32(run)
    t.paged_adamw_8bit(run)


if __name__ == "__main__":
    main(setup)
