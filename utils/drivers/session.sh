#!/usr/bin/env bash
# `make session`: on whatever device this is, in one call, the device's own tests and the
# README's figures, into docs/results/<device>/:
#   1. environment (nvidia-smi, torch), 2. the GPU tests (tests/e2e/test_cuda.py; skipped on a
#   CPU), 3. make all into a fresh results file there, 4. nanoGPT's bench.py beside it when
#   NANOGPT_DIR is set, 5. make report and make plots there.
# Each stage's output goes to a log beside the figures; a failing stage is reported and the
# next still runs. Settings (STEPS, REPEATS, TECHNIQUES, ...) come from make as usual.
set -uo pipefail
: "${PYTHON:?}"
# the device as results.csv names it (GPU name, or CPU model and threads): figures are per machine
device=$($PYTHON -m utils.drivers.device_name) || exit 2
slug=$(echo "$device" | tr 'A-Z' 'a-z' | sed -E 's/[^a-z0-9]+/_/g; s/^_|_$//g')
out=${SUITE_SESSION_DIR:-docs/results/$slug}
mkdir -p "$out"
failed=()

stage() {  # stage NAME COMMAND...: run, log to $out/NAME.log, remember a failure
    local name=$1
    shift
    echo "=== session: $name -> $out/$name.log"
    if ! "$@" 2>&1 | tee "$out/$name.log"; then
        failed+=("$name")
    fi
}

stage environment bash -c "nvidia-smi 2>/dev/null || true; $PYTHON -c 'import torch; print(torch.__version__, torch.version.cuda)'"
stage gpu_tests $PYTHON -m pytest -q tests/e2e/test_cuda.py
if [ -e "$out/results.csv" ]; then
    mv "$out/results.csv" "$out/results.csv.$(date -u +%Y%m%dT%H%M%SZ).bak"  # never overwrite earlier figures
fi
stage all make --no-print-directory all PYTHON="$PYTHON" RESULTS_FILE="$out/results.csv"
if [ -n "${SUITE_NANOGPT_DIR:-}" ]; then
    stage nanogpt_bench $PYTHON -m utils.drivers.nanogpt_bench "$SUITE_NANOGPT_DIR" --out "$out/nanogpt_bench.txt"
fi
stage report make --no-print-directory report PYTHON="$PYTHON" RESULTS_FILE="$out/results.csv" \
    REPORT="$out/REPORT.md" PLOTS_DIR="$out" PLOTSPREFIX="${slug}_"
echo "session: figures in $out/" "${failed[@]/#/; failed: }"
[ ${#failed[@]} -eq 0 ]
