"""Evaluation on held-out batches, timed apart from training.

Every EVAL_EVERY training steps (warm-up steps count: they train too), before the first and
after the last, the loop hands over to `Evaluator.evaluate`: the model switches to eval mode,
the same EVAL_BATCHES held-out batches run under torch.no_grad (and the run's autocast),
and it switches back. The loop syncs the device first, so the training wall-clock read at
that moment is exact, and takes the evaluation's time out of the phase's wall-clock; an
evaluation falls between one step's last mark and the next step's first, so it never enters
a step time. Each evaluation becomes one `phase=eval` row of results.csv.
"""

import math
import time

import torch

from utils.techniques.step import autocast


class Evaluator:
    def __init__(self, run, val_batches, every, total_steps):
        self.run, self.val_batches, self.every, self.total_steps = run, val_batches, every, total_steps
        self.trained_steps = 0
        self.window = []  # training losses since the previous evaluation, still on the device
        self.records = []

    def due(self, loss):
        """Count one training step (keeping its loss); whether an evaluation follows it."""
        self.trained_steps += 1
        self.window.append(loss.detach())
        return self.trained_steps % self.every == 0 or self.trained_steps == self.total_steps

    def evaluate(self, trained_ms):
        """Evaluate now; `trained_ms` is the training wall-clock so far. Returns the ms it took."""
        start = time.perf_counter()
        model = self.run.model
        model.eval()
        with torch.no_grad(), autocast(self.run):
            total = sum(model(x, y)[1].float() for x, y in self.val_batches)
        model.train()
        val_loss = total.item() / len(self.val_batches)  # note: the one sync of an evaluation
        train_loss = torch.stack(self.window).float().mean().item() if self.window else None
        self.window = []
        eval_ms = (time.perf_counter() - start) * 1e3
        self.records.append(
            {
                "train_steps": self.trained_steps,
                "train_s": trained_ms / 1e3,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "val_ppl": math.exp(min(val_loss, 700.0)),  # a diverged run's loss must not overflow exp
                "eval_ms": eval_ms,
            }
        )
        return eval_ms
