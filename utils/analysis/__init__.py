"""Analysis: which rows are compared together (configs), statistics over them (bootstrap CIs, speedups,
the noise floor, the adaptive stopping rule), convergence (time to target, drift) and the grid's table.

Job: numbers from rows, for the report, the plots and the drivers. May import: pandas, numpy,
utils.results, utils.models (its torch-free table), utils.checks; never torch, so a CSV from
another machine is analysed anywhere.
"""
