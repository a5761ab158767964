"""Plans in worker processes: make tune's configurations, make plan_check's tables.

A plan is Python-bound (fake tensors: dynamo, AOTAutograd, inductor's lowering and scheduling, no arithmetic), one
core's work, so a machine plans as many at once as it has cores: a pool of spawned processes (a forked one would
inherit torch's threads and locks mid-use), each running torch on one thread and printing no warnings (Python's, or
torch's logged ones: dynamo's advice on each compiled checkpoint, once per plan).
"""

import concurrent.futures
import contextlib
import io
import logging
import multiprocessing
import os
import warnings


def cores():
    """How many plans this machine runs at once: one per core."""
    return os.cpu_count() or 1


def quiet():
    """A worker's set-up: one thread (the workers share this machine's cores), no warnings."""
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    torch._logging.set_logs(all=logging.ERROR)


def pool(workers):
    """A pool of `workers` spawned processes, each set up by quiet()."""
    context = multiprocessing.get_context("spawn")
    return concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=quiet)


def printed(function, *args):
    """`function(*args)` with what it prints to stdout kept: (that text, its value)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        value = function(*args)
    return out.getvalue(), value
