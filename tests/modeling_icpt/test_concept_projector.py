"""The projector (and the cross-attention it returns), the complexity score and the length rule."""

import numpy as np
import pytest
import torch
from PIL import Image

from modeling_icpt import ICPTConfig, ICPTForConditionalGeneration
from modeling_icpt.concept_projector import ConceptProjector, concept_complexity, prompt_lengths
from processing_icpt import ICPTProcessor


def small_config(**overrides):
    return ICPTConfig(text_hidden_size=16, vision_hidden_size=8, projector_hidden_size=16, projector_heads=2,
                      projector_layers=1, **overrides)


def test_rows_have_the_configured_norm_and_shape():
    config = small_config(prompt_norm=3.0)
    rows = ConceptProjector(config)(torch.randn(2, 5, 8), torch.ones(2, 5, dtype=torch.bool),
                                    torch.zeros(2, 5, dtype=torch.long), torch.randn(2, 16))
    assert rows.shape == (2, config.max_prompt_length, 16)
    torch.testing.assert_close(rows.norm(dim=-1), torch.full((2, config.max_prompt_length), 3.0))


def test_masked_patches_do_not_change_the_output():
    projector = ConceptProjector(small_config())
    patches, mask = torch.randn(1, 6, 8), torch.tensor([[True, True, True, False, False, False]])
    index, name = torch.zeros(1, 6, dtype=torch.long), torch.randn(1, 16)
    changed = patches.clone()
    changed[0, 3:] = 100.0
    torch.testing.assert_close(projector(patches, mask, index, name), projector(changed, mask, index, name))


def test_complexity_is_low_for_one_direction_and_high_for_many():
    flat = torch.ones(30, 8) * torch.randn(1, 8)  # every patch identical
    line = torch.randn(30, 1) * torch.randn(1, 8)  # patches along one direction
    rich = torch.randn(30, 8)
    assert concept_complexity(flat) == 0
    assert concept_complexity(line) < 0.05
    assert concept_complexity(rich) > 0.6
    assert concept_complexity(torch.randn(1, 8)) == 0  # one patch: nothing to measure


def test_length_rule_is_monotone_and_bounded():
    config = small_config(min_prompt_length=2, max_prompt_length=8)
    kappa = torch.linspace(0, 1, 101)
    lengths = prompt_lengths(kappa, config)
    assert lengths.min() == 2 and lengths.max() == 8
    assert (lengths[1:] >= lengths[:-1]).all()
    fixed = prompt_lengths(kappa, small_config(adaptive_length=False))
    assert (fixed == 8).all()


def test_flat_references_get_the_minimum_and_textured_ones_more(tiny_backbone_dirs):
    path = tiny_backbone_dirs["llava"]
    processor = ICPTProcessor.from_backbone(path)
    model = ICPTForConditionalGeneration.from_backbone(path, min_prompt_length=2, max_prompt_length=8)
    rng = np.random.default_rng(0)
    flat = [Image.new("RGB", (48, 48), (200, 30, 30))] * 3
    textured = [Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)) for _ in range(3)]
    bank = model.encode_concepts(**processor.prepare_references({"<flat>": flat, "<rich>": textured}))
    assert bank.lengths["<flat>"] == 2
    assert bank.lengths["<rich>"] > 2
    assert bank.complexity[0] < bank.complexity[1]


def test_nested_truncation_keeps_the_first_rows(tiny_backbone_dirs, images):
    """A prompt truncated to k rows is the first k rows of the full prompt, in the slots the LM sees."""
    path = tiny_backbone_dirs["llava"]
    processor = ICPTProcessor.from_backbone(path, max_prompt_length=6)
    model = ICPTForConditionalGeneration.from_backbone(path, max_prompt_length=6, projector_layers=1)
    refs = processor.prepare_references({"<bo>": images[:3]})
    bank = model.encode_concepts(**refs)
    seen = {}
    hook = model.vlm.get_decoder().register_forward_pre_hook(
        lambda m, a, k: seen.__setitem__("embeds", k["inputs_embeds"]), with_kwargs=True)
    for k in (1, 3, 6):
        inputs = processor(text=["<image>Is <bo> here?"], images=[[images[4]]], references={"<bo>": images[:3]},
                           prompt_lengths=k)
        model(**inputs)
        slots = inputs["input_ids"][0] == processor.prompt_token_id
        torch.testing.assert_close(seen["embeds"][0, slots], bank.prompts[0, :k])
    hook.remove()


def test_too_many_references_is_refused(tiny_backbone_dirs, images):
    path = tiny_backbone_dirs["llava"]
    processor = ICPTProcessor.from_backbone(path)
    model = ICPTForConditionalGeneration.from_backbone(path, max_references=2)
    with pytest.raises(ValueError, match="max_references"):
        model.encode_concepts(**processor.prepare_references({"<bo>": images[:3]}))


def test_projector_returns_its_cross_attention_without_changing_its_rows():
    torch.manual_seed(0)
    config = ICPTConfig(text_hidden_size=32, vision_hidden_size=16, projector_hidden_size=16, projector_heads=2,
                        projector_layers=2)
    projector = ConceptProjector(config).eval()
    patches = torch.randn(2, 10, 16)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 6:] = False  # the second concept has 6 real patches
    args = (patches, mask, torch.zeros(2, 10, dtype=torch.long), torch.randn(2, 32))
    with torch.no_grad():
        rows = projector(*args)
        rows_again, attentions = projector(*args, output_attentions=True)
    torch.testing.assert_close(rows_again, rows)
    assert len(attentions) == config.projector_layers
    for weights in attentions:
        assert weights.shape == (2, config.max_prompt_length, 10)
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, config.max_prompt_length))
        assert float(weights[1, :, 6:].abs().max()) == 0.0  # padding is never read
