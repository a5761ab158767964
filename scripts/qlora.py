"""qlora: LoRA adapters over a frozen base stored in 4-bit NormalFloat (QLoRA), in bf16.

As lora (PEFT's adapters on the query and value projections, LORA_* settings), and every frozen
projection of the blocks, and a MoE block's expert stacks, is quantised to NF4 (torchao's to_nf4, as
torchtune's QLoRA: 64 weights per absmax, the absmaxes in 8 bits per 256): ~0.5 byte per weight
instead of 2, dequantised to bf16 in each forward and backward (slower). The weights are bf16, as
torchtune trains QLoRA.
What is learnt changes twice: rank-r updates only, over a base rounded to 16 levels per block.
Needs peft and torchao.
"""

from utils import techniques as t
from utils.measure.train import main


def setup(run):
    t.strict_fp32(run)
    t.bf16_weights(run)
    t.lora_adapters(run)
    t.nf4_base(run)
    t.adamw(run)


if __name__ == "__main__":
    main(setup)
