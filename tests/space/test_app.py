"""The Hugging Face Space (space/app.py): its requirements, and the folder running on its own."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- the Hugging Face Space


def test_space_requirements_follow_pyproject():
    """The Space installs from space/requirements.txt, not pyproject.toml: the same runtime and app requirements."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {r.replace(" ", "") for r in project["dependencies"] + project["optional-dependencies"]["app"]}
    lines = (REPO / "space" / "requirements.txt").read_text().splitlines()
    listed = {line.strip() for line in lines if line.strip() and not line.startswith(("#", "-"))}
    assert listed == wanted
    metadata = (REPO / "space" / "README.md").read_text().split("---")[1]
    assert "sdk: gradio" in metadata and "app_file: app.py" in metadata


def test_space_folder_runs_on_its_own(tmp_path):
    """space/build_space.sh assembles a Space whose app.py builds the page from the packages beside it."""
    import subprocess
    import sys

    pytest.importorskip("gradio")
    space = tmp_path / "space"
    subprocess.run(["bash", str(REPO / "space" / "build_space.sh"), str(space)], check=True, capture_output=True)
    assert not (space / "icpt" / "default" / "ablations").exists()
    check = ("import app, icpt; from pathlib import Path; "
             "assert Path(icpt.__file__).resolve().parent == Path('icpt').resolve(), icpt.__file__; "
             "assert len(app.demo.fns) >= 5")
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", check], cwd=space, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
