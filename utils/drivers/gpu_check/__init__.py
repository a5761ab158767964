"""`make gpu_check`: what a first GPU run executes (sized for under 10 minutes on one GPU), to
fail loudly where the suite's GPU path is wrong before any figure of that GPU is believed.

Six checks, each a table of figures with the bar each is held to and its verdict:
(a) precision: the TF32 flags strict_fp32 and tf32 leave, and an fp32 matmul's error against
    fp64 under each; (b) smoke: `make all` of ten techniques at a small shape, what each row
    says ran; (c) timing: per-step tokens/s against the end-to-end wall-clock; (d) graph
    memory: CUDA graphs' measured peak against the same step without graphs; (e) ddp / fsdp
    with their loss check (2+ GPUs); (f) `make plan` for this GPU against what was measured.
`make finetune_check` (finetune.py) is a seventh, (g), apart (its own minutes, its own folder):
the fine-tuning techniques on Llama 3.2 1B, each run as itself, its loss falling, its plan beside it.

Two halves, so that the judging is tested without a GPU:
    measure.py, probe.py   run the suite's own commands (make subprocesses) and the CUDA probe;
                           record what they wrote and said
    judge.py, judge_memory.py
                           pure functions: recorded rows and outputs in, Checks out (pandas only)
    report.py              the Checks as printed text and as gpu_check.md
    command.py             the one flow both commands share: probe, folder, measure, judge, write
    finetune.py            finetune_check's runs and its judging (g)

Everything it measured lands in docs/results/<device slug>/ (the folder make session uses):
results.csv (an earlier one is moved aside, never overwritten), a log per command,
probe.json and gpu_check.md. Exit 0 when every bar holds, 1 when one fails, 2 without a GPU.

usage: python -m utils.drivers.gpu_check   (make gpu_check; its shape is fixed: see measure.SHAPE)
       python -m utils.drivers.gpu_check.finetune   (make finetune_check: finetune.SETTINGS)
"""
