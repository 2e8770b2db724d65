"""examples/pretrain_world_backbone.py: the script parses its options and exports to the embedded default."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from icpt.commands.arguments import ArgumentParser
from icpt.inference import DEFAULT_BACKBONE
from icpt.world.pretraining.arguments import PretrainArguments

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "pretrain_world_backbone.py"


def test_the_script_parses_its_options_and_exports_to_the_embedded_default(tmp_path):
    """The example is the library behind a parser: its --help shows the dash forms and the embedded default's folder;
    a typo is a usage error."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "COLUMNS": "1000"}
    shown = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, env=env,
                           cwd=tmp_path, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "--patch-size" in shown.stdout and "--init-from" in shown.stdout and str(DEFAULT_BACKBONE) in shown.stdout
    with pytest.raises(SystemExit) as error:
        ArgumentParser(PretrainArguments).parse(["--patch-sise", "8"])
    assert error.value.code == 2
