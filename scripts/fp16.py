"""fp16: autocast to float16, with a GradScaler.

Like bf16, matmuls and activations run in half precision while weights and optimizer state
stay fp32; unlike bf16, fp16 keeps 10 mantissa bits but only 5 exponent bits (max 65504),
so small gradients underflow. torch.amp.GradScaler multiplies the loss by a large factor
before backward, unscales the gradients before the step, and skips a step whose gradients
hold inf/nan (halving the factor). Every row records whether its step was skipped
(scaler_skipped): a skipped step does no update, so a speedup made of skips is not one.
Pays on GPUs with fp16 but no bf16 tensor cores (T4, V100); elsewhere bf16 is simpler.
"""

from utils import techniques as t
from utils.measure.train import main


def setup(run):
    t.strict_fp32(run)
    t.autocast_fp16(run)
    t.adamw(run)


if __name__ == "__main__":
    main(setup)
