"""processing_icpt/input_checks.py, the link to the model's file: the installed processor uses the model's module,
so one `ICPTInputError` is raised and caught by both, and both read labels alike."""

import os
from pathlib import Path

import pytest

import modeling_icpt
import modeling_icpt.input_checks
import processing_icpt
from processing_icpt import input_checks as processor_checks
from processing_icpt import load_image

ROOT = Path(__file__).resolve().parents[2]


def test_the_file_is_the_model_s_file():
    here, there = ROOT / "processing_icpt" / "input_checks.py", ROOT / "modeling_icpt" / "input_checks.py"
    assert os.path.samefile(here, there)  # remote code copies each folder flat: both need the file


def test_one_module_and_one_exception_for_model_and_processor():
    assert processor_checks is modeling_icpt.input_checks
    assert processing_icpt.ICPTInputError is modeling_icpt.ICPTInputError
    assert processor_checks.LABEL_PATTERN is modeling_icpt.input_checks.LABEL_PATTERN


def test_the_processor_s_bad_input_is_caught_as_the_model_s(tmp_path):
    with pytest.raises(modeling_icpt.ICPTInputError, match="does not exist"):
        load_image(str(tmp_path / "missing.png"))
