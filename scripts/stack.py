"""stack: the fastest combination on a GPU: bf16 + flash + fused AdamW + torch.compile.

bf16 autocast, flash attention, fused AdamW and torch.compile (COMPILE_MODE, default "default";
the whole model unless COMPILE_SCOPE says blocks), at the batch given.

Each choice is a measured row of the H100 reference table (GPT-2 124M, B=16, T=1024, a bare
loop: utils/plan/h100.py; `make all` on the GPU measures them with this suite): bf16 137 ms/step vs tf32
165; + SDPA flash 48 ms; + fused AdamW 45.7; + compile 34.8 (471k tokens/s). Left out, also
measured there: fp16 (45.1 vs 45.7 ms, within noise, and it needs a GradScaler), compile
mode reduce-overhead (459k vs 468k tokens/s: the GPU, not the launch path, is the limit),
max-autotune (autotuning ran past 7 minutes), per-block compile (426k), float8 (433k: d=768
matmuls too small), 8-bit AdamW and Lion (slower; they save memory, not time). A larger
batch helps a little (B=32: 492k) but the batch is the user's choice, so BATCH stays as given.
Each line is the same function its own script applies; utils/techniques/ applies them
in a fixed order, so they compose. Its row in utils/catalog.py says it equals flash+fused+compile.
"""

from utils import techniques as t
from utils.measure.train import main


def setup(run):
    t.strict_fp32(run)
    t.autocast_bf16(run)
    t.flash_attention(run)
    t.fused_adamw(run)
    t.compile_model(run)


if __name__ == "__main__":
    main(setup)
