#!/usr/bin/env bash
# The GPU check in one command, for a lent GPU machine (no network there):
#   run: command "bash bench/gpu_check.sh", carry ["bench/wheels", "bench/carry"], timeout_s 580
# (fill those two folders here first with `bash bench/fetch_wheels.sh`). Rehearse on the CPU with
#   OUT=/tmp/gpu-dry bash bench/gpu_check.sh --dry-run
# Arguments go to bench/gpu_check.py (--dry-run, --budget S, --only a,b, --scratch DIR).
# What lands in $OUT: gpu_check.json (rewritten after every step), gpu_check.log, gradcam_*.png.
set -uo pipefail
export GPU_CHECK_T0="${GPU_CHECK_T0:-$(date +%s)}"  # the driver's budget counts from here
cd "$(dirname "$0")/.."

export OUT="${OUT:-/tmp/gpu_check_out}"
mkdir -p "$OUT"
export GPU_CHECK_SCRATCH="${GPU_CHECK_SCRATCH:-/tmp/gpu_check}"
PY="${PYTHON:-python3}"  # on the GPU image the plain python3 is the one with torch
site="${GPU_CHECK_SITE:-/tmp/gpu_check_site}"  # outside the scratch folder, which the driver empties
log="$OUT/gpu_check.log"

{
    echo "##### gpu_check.sh $(date -u +%FT%TZ) on $(hostname), $($PY -V 2>&1) at $(command -v "$PY")"
    # The packages the GPU image lacks (textual, plotext, grad-cam, ...), as carried wheels,
    # installed beside the image's environment rather than into it.
    if compgen -G "bench/wheels/*.whl" >/dev/null; then
        rm -rf "$site"
        if "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
                --disable-pip-version-check --target "$site" bench/wheels/*.whl; then
            echo "wheels installed into $site: $(cd bench/wheels && ls | tr '\n' ' ')"
        else
            echo "!! pip could not install bench/wheels (the steps that import them will say so)"
        fi
    else
        echo "!! no bench/wheels/*.whl: run bench/fetch_wheels.sh here and carry bench/wheels"
    fi
} >>"$log" 2>&1

# lab itself runs from this tree (no install: the image's environment stays as it is).
export PYTHONPATH="$PWD:$site${PYTHONPATH:+:$PYTHONPATH}"
export LAB_OFFLINE=1 PYTHONUNBUFFERED=1
export LAB_RUNS_DIR="$GPU_CHECK_SCRATCH/runs" LAB_DATA_DIR="$GPU_CHECK_SCRATCH/data"
export TORCH_HOME="$GPU_CHECK_SCRATCH/torch"

"$PY" bench/gpu_check.py --out "$OUT" --scratch "$GPU_CHECK_SCRATCH" "$@"
rc=$?
echo "gpu_check.sh: exit $rc; $OUT holds: $(ls "$OUT" | tr '\n' ' ')"
exit $rc
