"""scripts/import_graph.py: the layout's imports go one way, and the script catches a cycle or an upward import."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "import_graph.py"


def run(*arguments):
    return subprocess.run([sys.executable, str(SCRIPT), *arguments], capture_output=True, text=True, timeout=120)


def test_the_package_imports_have_no_cycle_no_upward_import_and_none_inside_functions():
    result = run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: no cycle, no upward import" in result.stdout
    assert "imports inside functions: 0" in result.stdout


def test_a_hidden_cycle_and_an_upward_import_are_caught(tmp_path):
    for package in ("modeling_icpt", "processing_icpt", "icpt"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    # the core reaching up into the application, and a cycle hidden in a function and an importlib name
    (tmp_path / "modeling_icpt" / "model.py").write_text("def push():\n    from icpt.cards import card\n")
    (tmp_path / "icpt" / "cards.py").write_text("import modeling_icpt.model\n")
    (tmp_path / "icpt" / "inference.py").write_text("TABLE = {'x': 'icpt.training.run'}\n")
    (tmp_path / "icpt" / "training").mkdir()
    (tmp_path / "icpt" / "training" / "__init__.py").write_text("")
    (tmp_path / "icpt" / "training" / "run.py").write_text("from icpt import inference\n")
    result = run("--root", str(tmp_path))
    assert result.returncode == 1
    assert "upward import: modeling_icpt/model.py:2 (modeling_icpt) imports icpt.cards" in result.stdout
    assert "upward import: icpt/inference.py:1 (icpt.inference) imports icpt.training.run" in result.stdout
    assert "cycle: icpt.cards <-> modeling_icpt.model" in result.stdout
    assert "cycle: icpt.inference <-> icpt.training.run" in result.stdout
    assert "imports inside functions: 1" in result.stdout
