"""nanoGPT's own bench.py, run beside the suite on the same device: the outside reference
for `stack` (the suite's best tokens/s against nanoGPT's compiled bench).

nanoGPT is not part of this suite (nor vendored): point NANOGPT_DIR at a checkout of
github.com/karpathy/nanoGPT. Its bench.py times 20 steps by the wall clock after 10 of
burn-in, with a loss.item() per step, so its figure compares with the suite's end-to-end
tokens/s (`wall_tokens_per_s`), not with the per-step event times.

usage: python -m utils.drivers.nanogpt_bench NANOGPT_DIR [--batch 12] [--seq 1024] [--out FILE]
"""

import argparse
import re
import subprocess
import sys
from pathlib import Path

ITERATION = re.compile(r"time per iteration: ([0-9.]+)ms, MFU: ([0-9.]+)%")


def parse(output):
    """(ms per iteration, MFU %) from bench.py's output: its last, post-burn-in line."""
    found = ITERATION.findall(output)
    if not found:
        raise ValueError("no 'time per iteration' line in nanoGPT bench.py's output")
    ms, mfu = found[-1]
    return float(ms), float(mfu)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("nanogpt_dir")
    parser.add_argument("--batch", type=int, default=12)  # bench.py's own default
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    bench = Path(args.nanogpt_dir) / "bench.py"
    if not bench.is_file():
        print(f"nanogpt_bench: error: no bench.py in NANOGPT_DIR={args.nanogpt_dir}", file=sys.stderr)
        return 2
    # random tokens, as the suite's DATA=fixed / coinflip: no dataset to prepare
    flags = ["--real_data=False", "--compile=True", f"--batch_size={args.batch}", f"--block_size={args.seq}"]
    proc = subprocess.run([sys.executable, "bench.py", *flags], cwd=bench.parent, capture_output=True, text=True)
    try:
        ms, mfu = parse(proc.stdout)
    except ValueError as err:
        print(f"nanogpt_bench: error: {err} (exit {proc.returncode}): {proc.stderr.strip()[-300:]}", file=sys.stderr)
        return 1
    line = (
        f"nanoGPT bench.py {' '.join(flags)}: {ms:.2f} ms/iter, "
        f"{args.batch * args.seq / (ms / 1e3) / 1e3:.1f}k tokens/s end to end, MFU {mfu:.1f}% (nanoGPT's estimate)"
    )
    print(line)
    if args.out:
        Path(args.out).write_text(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
