"""make tune: the fastest setup that fits, from the techniques' table, the planner's predictions and,
with VERIFY, this machine's measurements.

Job: search the space of configurations (space.py), plan each in worker processes (plans.py), split the
batch or save memory where it does not fit (search.py), rank and write the answer (report.py); VERIFY
measures the top here and checks the winner still learns (verify.py). May import: plan and what plan
may, drivers (the runner's fresh processes) and analysis (the convergence tolerances).
"""
