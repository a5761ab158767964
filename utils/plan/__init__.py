"""Plan: GPU memory predicted on any machine, by running the technique's real training step
on fake tensors (planner.py) with the CUDA side modelled (cuda.py), checked against measured
peaks (reference.py).

Job: answers about a GPU this machine does not have; its rows are `predicted`, never mixed
with measured ones. May import: utils.measure, utils.techniques, utils.models, utils.results,
utils.registry, utils.settings, utils.checks.
"""
