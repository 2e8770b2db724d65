"""Reference features from the vision tower of each backbone family (modeling_icpt/reference_features.py)."""

import pytest
import torch
from transformers import AutoModelForImageTextToText, Blip2Config, LlamaConfig

from helpers.backbone_inputs import IMAGES
from helpers.tiny_backbones import FAMILIES
from modeling_icpt.reference_features import (
    backbone_family,
    num_vision_layers,
    reference_features,
    text_hidden_size,
    vision_hidden_size,
)
from processing_icpt.backbone_processing import process_reference_images


def _model_view_of_features(family, model, image_inputs, features):
    """The same patch features read through transformers' own code paths, per image, to compare with ours."""
    tower_config = model.config.vision_config
    if family in ("qwen2_vl", "qwen2_5_vl"):
        # The merger of our (unpermuted) last-block features must give the model's image features.
        merged = model.model.visual.merger(torch.cat(features))
        expected = model.model.get_image_features(image_inputs["pixel_values"], image_inputs["image_grid_thw"])
        return list(torch.split(merged, [len(f) // tower_config.spatial_merge_size**2 for f in features])), list(
            expected.pooler_output
        )
    if family == "llava_next":
        # Projected, our features must be the model's packed features without its image-newline rows.
        ours = [model.model.multi_modal_projector(f) for f in features]
        packed = model.model.get_image_features(
            image_inputs["pixel_values"], image_inputs["image_sizes"], vision_feature_layer=-1
        ).pooler_output
        newline = model.model.image_newline
        return ours, [p[~(p == newline).all(-1)] for p in packed]
    if family in ("llava", "internvl"):
        hidden = model.model.vision_tower(image_inputs["pixel_values"], output_hidden_states=True).hidden_states[-1]
        crops = image_inputs.get("num_patches", torch.ones(len(features), dtype=torch.long)).tolist()
        return features, [c[:, 1:].reshape(-1, c.shape[-1]) for c in torch.split(hidden, crops)]
    # Idefics3 / SmolVLM: crops of all images in one batch (no padding crops, all patches valid here).
    pixel_values = image_inputs["pixel_values"].flatten(0, 1)
    hidden = model.model.vision_model(pixel_values, output_hidden_states=True).hidden_states[-1]
    crops = [r * c + 1 for r, c in zip(image_inputs["rows"][0], image_inputs["cols"][0])]
    return features, [c.reshape(-1, c.shape[-1]) for c in torch.split(hidden, crops)]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("layers", [[-1], [1, -1]])
def test_reference_features_batched_equal_one_at_a_time(backbones, family, layers):
    _, model, processor = backbones(family)
    width = len(layers) * vision_hidden_size(model.config)
    batched = reference_features(model, process_reference_images(processor, IMAGES), layers)
    singles = [reference_features(model, process_reference_images(processor, [image]), layers)[0] for image in IMAGES]

    assert len(batched) == len(IMAGES)
    for features, single in zip(batched, singles):
        assert features.shape == single.shape and features.shape[-1] == width
        torch.testing.assert_close(features, single, rtol=1e-4, atol=1e-5)
    if family != "llava":  # every other family gives differently sized images different patch counts
        assert len({f.shape[0] for f in batched}) > 1


@pytest.mark.parametrize("family", FAMILIES)
def test_reference_features_are_what_the_model_sees(backbones, family):
    _, model, processor = backbones(family)
    image_inputs = process_reference_images(processor, IMAGES)
    features = reference_features(model, image_inputs, [-1])
    with torch.no_grad():
        ours, expected = _model_view_of_features(family, model, image_inputs, features)
    assert [o.shape for o in ours] == [e.shape for e in expected]
    for o, e in zip(ours, expected):
        torch.testing.assert_close(o, e, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_reference_features_follow_the_tower_dtype(backbones, family):
    path, model, processor = backbones(family)
    half = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.bfloat16).eval()
    image_inputs = process_reference_images(processor, IMAGES)  # float32 pixels, cast to the tower's dtype
    for low, full in zip(
        reference_features(half, image_inputs, [1, -1]), reference_features(model, image_inputs, [1, -1])
    ):
        assert low.dtype == torch.bfloat16
        torch.testing.assert_close(low.float(), full, rtol=0.05, atol=0.1)


def test_reference_features_layer_order_and_concatenation(backbones):
    _, model, processor = backbones("qwen2_5_vl")
    image_inputs = process_reference_images(processor, IMAGES)
    first, last = reference_features(model, image_inputs, [1]), reference_features(model, image_inputs, [-1])
    both = reference_features(model, image_inputs, [1, -1])
    for one, end, both_layers in zip(first, last, both):
        torch.testing.assert_close(both_layers, torch.cat([one, end], dim=-1))
    # With two blocks, layer 2 is layer -1.
    for end, two in zip(last, reference_features(model, image_inputs, [2])):
        torch.testing.assert_close(end, two)


def test_reference_features_run_the_tower_in_eval_mode(backbones):
    _, model, processor = backbones("llava")
    image_inputs = process_reference_images(processor, IMAGES)
    expected = reference_features(model, image_inputs, [-1])
    for layer in model.model.vision_tower.encoder.layers:
        layer.self_attn.dropout = 0.9  # would change the features if dropout were active
    model.train()
    try:
        features = reference_features(model, image_inputs, [-1])
        assert model.model.vision_tower.training
    finally:
        for layer in model.model.vision_tower.encoder.layers:
            layer.self_attn.dropout = 0.0
        model.eval()
    for f, e in zip(features, expected):
        torch.testing.assert_close(f, e)


def test_split_image_families_drop_padding_crops_and_patches(backbones):
    _, model, processor = backbones("idefics3")
    # One sample per image: samples with fewer crops are padded with all-zero crops.
    nested = processor.image_processor(
        images=[[image] for image in IMAGES], return_tensors="pt", return_row_col_info=True
    )
    flat = process_reference_images(processor, IMAGES)
    for a, b in zip(reference_features(model, nested, [-1]), reference_features(model, flat, [-1])):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)

    # Mask the right half of the last crop (the global view) of the first image: its 8 right patches go.
    counts = [f.shape[0] for f in reference_features(model, flat, [-1])]
    last_crop_of_first_image = int(flat["rows"][0][0] * flat["cols"][0][0])
    flat["pixel_attention_mask"][0, last_crop_of_first_image, :, 16:] = 0
    masked = [f.shape[0] for f in reference_features(model, flat, [-1])]
    assert masked == [counts[0] - 8, *counts[1:]]

    del flat["rows"]
    with pytest.raises(ValueError, match="return_row_col_info=True"):
        reference_features(model, flat, [-1])


def test_invalid_layers_are_refused(backbones):
    _, model, processor = backbones("llava")
    image_inputs = process_reference_images(processor, IMAGES[:1])
    for layers in ([0], [3], [-3], []):
        with pytest.raises(ValueError, match="layer|layers"):
            reference_features(model, image_inputs, layers)


@pytest.mark.parametrize("config", [Blip2Config(), LlamaConfig()], ids=["blip-2", "llama"])
def test_unsupported_backbones_are_refused(config):
    for function in (backbone_family, vision_hidden_size, num_vision_layers, text_hidden_size):
        with pytest.raises(ValueError, match="Supported families: llava, llava_next, qwen2_vl") as error:
            function(config)
        assert repr(config.model_type) in str(error.value)
