"""The suite's package, grouped by job. Where a change goes:

    settings.py   every setting once (name, default, check, help): flags, make help, docs
    checks.py     bad input, checked in one place (one line, exit 2)
    catalog.py    the techniques as data: calls, where each runs, what it changes (stdlib)
    registry.py   the techniques by name and their combinations, from the catalog
    devices.py    GPU dense peaks per dtype, each with its source (MFU)
    units.py      MiB and GiB, once
    requirements.py  what an interpreter given as PYTHON= lacks, in one line (stdlib only)
    reference.py  make help and docs/reference.md, made from the tables above
    models/       the GPT and LSTM, their presets, Hugging Face configs (hf:) and modules from files,
                  one resolve and one build_model, behind one interface (Costed)
    techniques/   the run state and the technique functions, in their stage order
    measure/      config, data, the measuring loop, evaluation, memory tracking, environment,
                  torchrun; train.py is what every technique script runs
    results/      the results.csv schema, atomic appends, validated reads, row identity
    analysis/     statistics, convergence, the grid's table (rows in, numbers out)
    report/       make report: markdown from rows
    plots/        make plots / compare: charts from rows
    plan/         make plan / plan_check: GPU memory predicted on fake tensors
    tune/         make tune: the techniques' space planned for a GPU, the fastest that fits; VERIFY
                  measures the top here
    drivers/      commands over many runs (all, grid, lrsweep, maxbatch, scaling, launch,
                  profile, session, gpu_check), each run a fresh process through drivers/runner.py

Imports run one way: drivers and tune -> plan -> measure -> techniques -> models, each of them free to
use the leaves (settings, checks, registry, devices, results, units). report and plots -> analysis
-> results never import torch: a CSV from another machine reports and plots anywhere.
tests/unit/test_layout.py holds every module to this.
"""
