"""Measure: one run of a technique on this machine, measured honestly, into results.csv rows.

    config.py     the settings -> one validated RunConfig (bad input stops here)
    data.py       batches with a held-out split, made on the training device
    loop.py       the measuring loop: warm-up apart, synchronised step times split into
                  parts, the phases' wall-clocks, training's own peaks
    evaluate.py   evaluations on held-out batches, out of every timed figure
    memory.py     MemTracker's breakdown of one extra step, the allocator's health
    preflight.py  a run that cannot fit, refused before it trains
    env.py        what ran where: device, driver, CUDA, torch, git sha
    parallel.py   torchrun's ranks: the process group, the ranks' figures combined
    train.py      what every technique script runs: config -> run -> loop -> rows

Job: measured rows, never predicted ones; a figure it cannot measure honestly is left blank.
May import: utils.techniques, utils.models, utils.results, utils.settings, utils.checks,
utils.devices, utils.registry, utils.requirements, utils.units.
"""
