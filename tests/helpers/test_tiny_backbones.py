"""The tiny backbones of tests/helpers/tiny_backbones.py: every supported family, deterministic, small."""


import pytest

from helpers.tiny_backbones import FAMILIES, build_tiny_backbone
from modeling_icpt.reference_features import SUPPORTED_FAMILIES, num_vision_layers, text_hidden_size


def test_families_match_the_supported_families():
    assert FAMILIES == SUPPORTED_FAMILIES


def test_build_is_deterministic_in_the_seed(tmp_path):
    first = build_tiny_backbone("llava", tmp_path / "a", seed=3)
    second = build_tiny_backbone("llava", tmp_path / "b", seed=3)
    third = build_tiny_backbone("llava", tmp_path / "c", seed=4)
    assert (first / "model.safetensors").read_bytes() == (second / "model.safetensors").read_bytes()
    assert (first / "tokenizer.json").read_bytes() == (second / "tokenizer.json").read_bytes()
    assert (first / "model.safetensors").read_bytes() != (third / "model.safetensors").read_bytes()


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_backbone_loads_and_is_small(backbones, family):
    _, model, processor = backbones(family)
    assert model.config.model_type == family
    assert model.config.text_config.vocab_size == len(processor.tokenizer) <= 512
    assert sum(parameter.numel() for parameter in model.parameters()) < 200_000
    assert text_hidden_size(model.config) == model.get_input_embeddings().weight.shape[1]
    assert num_vision_layers(model.config) == 2
