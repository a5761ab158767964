"""What ran where: device, driver, CUDA, torch, git sha, host. Captured once per run."""

import os
import platform
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


def git_sha():
    sha = _run("git", "rev-parse", "--short=12", "HEAD")
    if not sha:
        return "unknown"
    return sha + ("+dirty" if _run("git", "status", "--porcelain", "--untracked-files=no") else "")


def capture(device):
    if device == "cuda":
        index = torch.cuda.current_device()
        name = torch.cuda.get_device_name(index)
        driver = _run("nvidia-smi", f"--id={index}", "--query-gpu=driver_version", "--format=csv,noheader")
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


def main():
    """python -m utils.measure.env: the device name the rows will carry (make session)."""
    import sys

    from utils import checks
    from utils.measure import config

    try:
        print(capture(config.load("session", argv=[], check_results=False).device)["device"])
    except checks.BadInput as err:
        print(f"session: error: {err}", file=sys.stderr)
        sys.exit(checks.EXIT_BAD_INPUT)


if __name__ == "__main__":
    main()
