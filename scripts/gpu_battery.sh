#!/usr/bin/env bash
# The GPU battery (configs/sweeps/gpu-battery.yaml) plus the cap check, on one CUDA card without
# vLLM or internet. Records go to results/gpu/ (commit them); the summary table and the cap check
# print at the end. Usage: scripts/gpu_battery.sh [RESULTS_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-results/gpu}"
bench="${BENCH:-bench}"
mkdir -p "$out/checks"
status=0
"$bench" sweep configs/sweeps/gpu-battery.yaml --force --results-dir "$out" || status=$?
python scripts/gpu_cap_check.py --gpu rtx-4090 --gpu edge-4gb --out "$out/checks" || status=$?
"$bench" results --results-dir "$out"
exit "$status"
