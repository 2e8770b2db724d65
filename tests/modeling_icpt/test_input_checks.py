"""What the model and the processor both check (modeling_icpt/input_checks.py): the label format, which names are
local paths (never sent to the Hub), and the one exception for bad input."""

from pathlib import Path

import pytest

from modeling_icpt import ICPTInputError
from modeling_icpt.input_checks import LABEL_PATTERN, looks_like_local_path


@pytest.mark.parametrize("label", ["<bo>", "<my-mug>", "<c0>", "<Kiki_2>", "<|x|>"])
def test_a_label_is_one_word_in_angle_brackets(label):
    assert LABEL_PATTERN.fullmatch(label)


@pytest.mark.parametrize("text", ["bo", "<bo", "bo>", "<>", "<my mug>", "<<bo>>", "<a<b>"])
def test_what_is_not_a_label(text):
    assert not LABEL_PATTERN.fullmatch(text)


def test_labels_are_found_inside_a_question():
    assert LABEL_PATTERN.findall("Is <bo> next to <my-mug>? Or < not a label >.") == ["<bo>", "<my-mug>"]


def test_local_paths_and_hub_repo_ids():
    for local in ("/abs/bank", "./bank", "../bank", "~/bank", "a/b/c", "a\\b", "bank.safetensors", "x/config.json",
                  "model.bin", "weights.pt", Path("relative/x/y")):
        assert looks_like_local_path(local), local
    for repo in ("bank", "me/my-pets", "org/icpt-qwen2.5-vl-3b"):
        assert not looks_like_local_path(repo), repo


def test_bad_input_is_a_value_error_with_its_message():
    with pytest.raises(ValueError, match="unknown label <x>: encode it first"):
        raise ICPTInputError("unknown label <x>: encode it first")
