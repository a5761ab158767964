"""What ran where: device, driver, CUDA, torch, git sha, host. Captured once per run."""

import os
import platform
import re
import socket
import subprocess
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def _run(*cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, cwd=ROOT)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# figures, not code: make session sets the committed ones aside before it writes its own there
NOT_CODE = ":(exclude)docs/results"


def git_sha():
    """The commit of the suite that runs, +dirty where its code differs from it."""
    sha = _run("git", "rev-parse", "--short=12", "HEAD")
    if not sha:
        return "unknown"
    changed = _run("git", "status", "--porcelain", "--untracked-files=no", "--", ".", NOT_CODE)
    return sha + ("+dirty" if changed else "")


NVIDIA_DRIVER_FILE = Path("/proc/driver/nvidia/version")  # the kernel module's: there without nvidia-smi


def visible_gpus():
    """The GPUs nvidia-smi lists (its -L lines), whether or not torch can use them; [] without it."""
    return [line for line in _run("nvidia-smi", "-L").splitlines() if line.startswith("GPU ")]


def driver_version(index=0, driver_file=NVIDIA_DRIVER_FILE):
    """The NVIDIA driver's version: nvidia-smi's, else the kernel module's (containers often
    lack nvidia-smi), else blank."""
    version = _run("nvidia-smi", f"--id={index}", "--query-gpu=driver_version", "--format=csv,noheader")
    if version:
        return version
    try:
        match = re.search(r"Kernel Module\s+([\d.]+)", driver_file.read_text())
    except OSError:
        return ""
    return match.group(1) if match else ""


def capture(device, index=None):
    """What ran where. On CUDA, GPU `index` (None: the current device): under torchrun each rank
    names its own GPU, whether or not it has been made current yet."""
    if device == "cuda":
        index = torch.cuda.current_device() if index is None else index
        name = torch.cuda.get_device_name(index)
        driver = driver_version(index)
    else:
        name = f"{cpu_name()} ({torch.get_num_threads()} threads)"
        driver = ""
    return {
        "device": name,
        "driver": driver,
        "cuda": torch.version.cuda or "",
        "torch": torch.__version__,
        "git_sha": git_sha(),
        "host": socket.gethostname() or os.uname().nodename,
    }
