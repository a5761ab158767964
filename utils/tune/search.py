"""make tune's search on one GPU: screen the space, split the batch where it does not fit, confirm
the first few at full depth.

1. Every configuration of the space at the whole per-GPU batch as one micro-batch, screened
   (utils/tune/plans.py: planned at two depths, extrapolated).
2. Where that does not fit: the same with each memory saver (checkpointing, ...) and with all of
   them, then smaller micro-batches with accumulation (the global batch never changes): the
   largest micro-batch dividing it whose memory fits, from the line through B=1 and the whole
   batch (memory is affine in the batch: utils/drivers/maxbatch.py), screened in turn. A saver
   or a smaller micro-batch is never tried where the whole batch fits: each adds recomputation,
   copies or launches for the same work, so it cannot be faster there.
3. The fastest screened ones planned at full depth, CONFIRM of them that fit kept as planned;
   one that does not fit at full depth is dropped and the next confirmed.
"""

import dataclasses
import functools
import sys

from utils import checks
from utils.measure.loop import progress_bar
from utils.tune import plans
from utils.tune.space import Config, capable, join

CONFIRM = 2  # planned again at full depth: the top of the table (one round of two workers)
CONFIRM_ROUNDS = 4  # at most: each round is CONFIRM full plans, seconds to minutes for a compiled deep model
SPLIT_TOP = 4  # configurations that do not fit given memory savers and smaller micro-batches: the fastest few
FITS = "fits"


@dataclasses.dataclass
class Outcome:
    config: Config
    figures: object = None  # plans.Figures, or None
    why: str = ""  # where there are no figures, or they do not fit

    @property
    def fits(self):
        return self.why == FITS


def _accumulates(technique):
    try:
        join(technique, "accum")
    except checks.BadInput:
        return False
    return True


def _joined_if_allowed(technique, saver):
    """technique+saver, or technique where the catalog refuses the pair."""
    try:
        return join(technique, saver)
    except checks.BadInput:
        return technique


class Search:
    """The search on one GPU with a pool of planning workers (`pool.map(fn, *iterables)`)."""

    def __init__(self, pool, given, gpu, depth, budget_mib, pruned):
        self.pool, self.given, self.gpu, self.depth, self.budget_mib = pool, given, gpu, depth, budget_mib
        self.pruned = pruned  # space.Pruned: what the search leaves out, by reason
        self.planned = 0  # plans made
        self.leanest = None  # the Outcome of least memory screened

    def _plan(self, configs, depths):
        """Each config planned at each of `depths` (None: its own), in one map: the workers kept busy."""
        tasks = [(c, d) for d in depths for c in configs]
        self.planned += len(tasks)
        # a bar in a terminal: a compiled deep model's plans take a minute or more each
        bar = progress_bar(total=len(tasks), desc=f"tune: planning on {self.gpu.name}", leave=False,
                           disable=not sys.stderr.isatty())
        found = []
        for figures in self.pool.map(plans.plan, [self.given] * len(tasks), [c for c, _ in tasks],
                                     [self.gpu.key] * len(tasks), [d for _, d in tasks]):
            found.append(figures)
            bar.update()
        bar.close()
        return [found[i * len(configs):(i + 1) * len(configs)] for i in range(len(depths))]

    def screen(self, configs):
        """Outcome per config: its figures at the model's depth (extrapolated where it is deeper
        than 2 blocks), and whether its least memory fits."""
        configs = list(configs)
        depths = self._depths(configs)
        if depths is None:
            found = self._plan(configs, [None])[0]
        else:
            low, high = self._plan(configs, depths)
            found = [a if isinstance(a, str) else b if isinstance(b, str) else
                     plans.extrapolate(a, b, depths, self.depth) for a, b in zip(low, high, strict=True)]
        return [self._judged(c, f) for c, f in zip(configs, found, strict=True)]

    def _depths(self, configs):
        """The depths `configs` (one world's) are screened at, or None: planned whole (shallow enough)."""
        depths = plans.screen_depths(configs[0].gpus) if configs else None
        return None if self.depth is None or not depths or self.depth <= max(depths) else depths

    def _judged(self, config, figures):
        if isinstance(figures, str):
            self.pruned.add(figures.split(":")[0], f"{config.label}: {figures}")
            return Outcome(config, None, figures)
        outcome = Outcome(config, figures, figures.unfit(self.budget_mib) or FITS)
        leaner = self.leanest is None or figures.least_mib < self.leanest.figures.least_mib
        if leaner and _accumulates(config.technique):
            self.leanest = outcome  # where nothing fits, the first to try on more GPUs, at micro-batch 1
        return outcome

    def confirm(self, ranked):
        """`ranked` (fitting Outcomes, fastest first) planned at full depth in rounds of CONFIRM, in
        order, until CONFIRM fit there and no screened one left is faster than the fastest of them
        (a screened figure can be off: exposed communication on N GPUs is not affine in the depth),
        at most CONFIRM_ROUNDS rounds. Returns the confirmed, fastest first, then the rest screened."""
        if self._depths([o.config for o in ranked]) is None:
            return ranked
        confirmed, rest, rounds = [], list(ranked), 0

        def faster_left():
            best = max((o.figures.tokens_per_s for o in confirmed), default=0)
            return rest and rest[0].figures.tokens_per_s > best

        while rest and rounds < CONFIRM_ROUNDS and (len(confirmed) < CONFIRM or faster_left()):
            rounds += 1
            batch, rest = rest[:CONFIRM], rest[CONFIRM:]
            for outcome, full in zip(batch, self._plan([o.config for o in batch], [None])[0], strict=True):
                judged = self._judged(outcome.config, full)
                if judged.fits:
                    confirmed.append(judged)
                elif not isinstance(full, str):
                    releases = f", {full.steady_retries} releases a step" if full.steady_retries else ""
                    self.pruned.add(f"{judged.why} at full depth",
                                    f"{outcome.config.label}: device total {full.total_mib:,.0f} MiB{releases}")
        return sorted(confirmed, key=lambda o: -o.figures.tokens_per_s) + rest

    def split(self, outcome, savers):
        """Configurations that may fit where `outcome` (at the whole batch) does not: with each memory
        saver and with all of them, and at a smaller micro-batch with accumulation (whichever is
        faster is the ranking's to say); where none of these fits, the smaller micro-batch of its
        leanest variant that can accumulate."""
        config = outcome.config
        variants = self.screen([dataclasses.replace(config, technique=name)
                                for name in self._with_savers(config.technique, savers)])
        fitting = [o for o in variants + self._smaller(outcome) if o.fits]
        if fitting:
            return fitting
        splittable = [o for o in variants if o.figures and _accumulates(o.config.technique)]
        leanest = min(splittable, key=lambda o: o.figures.least_mib, default=None)
        return [o for o in self._smaller(leanest) if o.fits] if leanest else []

    def _with_savers(self, technique, savers):
        names, usable = [], []
        for saver in savers:
            try:
                name = join(technique, saver)
            except checks.BadInput as why:
                self.pruned.add("conflict (the catalog refuses the pair)", f"{technique}+{saver}: {why}")
                continue
            if capable(name, self.gpu.capability) is None:
                names.append(name)
                usable.append(saver)
        if len(usable) > 1:
            # all of them, where two choose the same thing (checkpointing's policy) the first: the catalog's
            # order puts the leaner first
            names.append(functools.reduce(_joined_if_allowed, usable, technique))
        return list(dict.fromkeys(names))

    def _smaller(self, outcome):
        """[the Outcome at the largest micro-batch dividing the per-GPU batch whose least memory
        fits], on the line through B=1 and the whole batch; [] where even B=1 does not."""
        config = outcome.config
        whole = config.batch * config.accum
        if not _accumulates(config.technique):
            self.pruned.add("conflict (the catalog refuses the pair)", f"{config.technique}+accum")
            return []
        if whole == 1:
            return []
        one = self.screen([dataclasses.replace(config, batch=1, accum=whole)])[0]
        if one.figures is None or not one.fits:
            if one.figures is not None:
                self.pruned.add("does not fit at micro-batch 1", one.config.label)
            return []
        slope = (outcome.figures.least_mib - one.figures.least_mib) / (whole - 1)
        room = int((self.budget_mib - one.figures.least_mib) / slope) + 1 if slope > 0 else whole
        best = max(b for b in range(1, whole) if whole % b == 0 and b <= max(room, 1))
        return [one] if best == 1 else self.screen([dataclasses.replace(config, batch=best, accum=whole // best)])
