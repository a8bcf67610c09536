#!/usr/bin/env bash
# The GPU battery (configs/sweeps/gpu-battery.yaml) plus the cap check, on one CUDA card without
# vLLM or internet. Records go to results/gpu/ (commit them); the summary table and the cap check
# print at the end.
# Usage: scripts/gpu_battery.sh [RESULTS_DIR]   run (after the machine checks pass)
#        scripts/gpu_battery.sh --plan          print every cell's target, cap, engine budget, driver
#                                               floor and expected status, and check the machine; runs nothing
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python}"
if [[ "${1:-}" == "--plan" ]]; then
  exec "$python" scripts/gpu_battery_plan.py
fi
out="${1:-results/gpu}"
bench="${BENCH:-bench}"
# The driver, MIG and CUDA_VISIBLE_DEVICES first: a machine that cannot run the battery stops here.
"$python" scripts/gpu_battery_plan.py --check
mkdir -p "$out/checks"
status=0
"$bench" sweep configs/sweeps/gpu-battery.yaml --force --results-dir "$out" || status=$?
"$python" scripts/gpu_cap_check.py --gpu rtx-4090 --gpu edge-4gb --out "$out/checks" || status=$?
"$bench" results --results-dir "$out"
exit "$status"
