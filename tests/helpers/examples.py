"""Running the scripts in examples/ as a user runs them: a subprocess of the script, this checkout on `PYTHONPATH`."""

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(EXAMPLES.parent)}


def run_example(name: str, *arguments, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(EXAMPLES / name), *map(str, arguments)], capture_output=True,
                          text=True, env=ENV, cwd=cwd, timeout=600)


def last_answer(printed: str) -> str:
    """The answer a demonstration prints last ("Q: ...\nA: answer")."""
    return printed.rsplit("\nA: ", 1)[1].rstrip("\n")
