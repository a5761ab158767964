"""lora: LoRA adapters (PEFT), every weight of the model frozen, only the adapters train.

Beside each targeted projection W, a low-rank pair B·A (rank LORA_RANK, scaled by LORA_ALPHA /
rank; B starts at zero, so the model starts as built) trains; W has no gradient and no
optimizer state. For a large model that is most of its memory: a fine-tune's way to fit.
What is learnt changes: only rank-r updates of the targeted matrices (LORA_TARGETS; auto: the
query and value projections). Needs peft.
"""

from utils import techniques as t
from utils.measure.train import main


def setup(run):
    t.strict_fp32(run)
    t.lora_adapters(run)
    t.adamw(run)


if __name__ == "__main__":
    main(setup)
