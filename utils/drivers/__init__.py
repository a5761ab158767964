"""Drivers: the commands over many runs (all, grid, lrsweep, maxbatch, scaling, launch under
torchrun, profile, session, gpu_check: a first GPU run's check of the GPU path) and the file
housekeeping (files.py).

Job: decide what to run and in which order, run each through runner.py (a fresh process),
then read the rows back and say what they show. May import anything in utils; nothing in
utils imports a driver.
"""
