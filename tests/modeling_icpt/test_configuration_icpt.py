"""`ICPTConfig` (modeling_icpt/configuration_icpt.py): its defaults, its round trip through config.json, and the
values it refuses, each with a message that names the field."""

import pytest

from modeling_icpt import ICPTConfig


def test_invalid_config_values_are_refused():
    with pytest.raises(ValueError, match="min_prompt_length"):
        ICPTConfig(min_prompt_length=9, max_prompt_length=8)
    with pytest.raises(ValueError, match="divisible"):
        ICPTConfig(projector_hidden_size=30, projector_heads=4)
    with pytest.raises(ValueError, match="vision_layers"):
        ICPTConfig(vision_layers=[0])


def test_the_length_rule_is_off_unless_min_prompt_length_is_lower():
    config = ICPTConfig(max_prompt_length=6)
    assert config.min_prompt_length == config.max_prompt_length == 6
    assert ICPTConfig(min_prompt_length=2, max_prompt_length=6).min_prompt_length == 2
    config = ICPTConfig(vision_layers=(12, -1), reader_lora_modules=("q_proj",))
    assert config.vision_layers == [12, -1] and config.reader_lora_modules == ["q_proj"]  # lists, as JSON keeps them


def test_a_saved_config_loads_back_the_same(tmp_path):
    config = ICPTConfig(base_model_name_or_path="../backbone", text_hidden_size=64, vision_layers=[2, -1],
                        min_prompt_length=2, max_prompt_length=4, reader_lora_rank=8, prompt_token_id=99)
    config.save_pretrained(tmp_path)
    loaded = ICPTConfig.from_pretrained(tmp_path)
    assert loaded.model_type == "icpt"
    for name in ("base_model_name_or_path", "text_hidden_size", "vision_layers", "min_prompt_length",
                 "max_prompt_length", "reader_lora_rank", "prompt_token_id", "reader_lora_modules"):
        assert getattr(loaded, name) == getattr(config, name), name


@pytest.mark.parametrize("values, field", [
    ({"text_hidden_size": 0}, "text_hidden_size must be >= 1, got 0"),
    ({"max_references": -1}, "max_references must be >= 1, got -1"),
    ({"separation_weight": -0.5}, "separation_weight must be >= 0, got -0.5"),
    ({"reader_lora_rank": -1}, "reader_lora_rank must be >= 0, got -1"),
    ({"separation_margin": 1.0}, "separation_margin is a cosine and must lie in [-1, 1), got 1.0"),
    ({"prompt_token": "<my token>"}, "prompt_token must be a non-empty string without spaces"),
    ({"reader_lora_rank": 4, "reader_lora_modules": []}, "a reader adapter (reader_lora_rank > 0) needs"),
    ({"vision_layers": []}, "vision_layers must be a non-empty list"),
])
def test_each_bad_value_is_named_in_one_message(values, field):
    with pytest.raises(ValueError) as error:
        ICPTConfig(**values)
    assert str(error.value).startswith("Invalid ICPTConfig: ") and field in str(error.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ValueError) as error:
        ICPTConfig(text_hidden_size=0, min_prompt_length=9, max_prompt_length=8, decoupling_weight=-1)
    message = str(error.value)
    assert "text_hidden_size must be >= 1" in message and "must not exceed max_prompt_length (8)" in message
    assert "decoupling_weight must be >= 0" in message and message.count(";") == 2
