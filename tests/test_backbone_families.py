"""The seven backbone families: tiny backbones, their processors, and reference features from their vision towers."""

import json

import numpy as np
import pytest
import torch
import transformers
from PIL import Image
from transformers import AutoModelForImageTextToText, Blip2Config, LlamaConfig
from transformers.processing_utils import ProcessorMixin

from helpers.tiny_backbones import FAMILIES, IMAGE_PLACEHOLDERS, PROCESSOR_CLASSES, build_tiny_backbone
from modeling_icpt.reference_features import (
    SUPPORTED_FAMILIES,
    backbone_family,
    num_vision_layers,
    reference_features,
    text_hidden_size,
    vision_hidden_size,
)
from processing_icpt.backbone_processing import (
    ImageOnlyBackboneProcessor,
    backbone_processor_config,
    build_backbone_processor,
    load_backbone_processor,
    process_reference_images,
)


IMAGE_ONLY_FAMILIES = ("qwen2_vl", "qwen2_5_vl", "internvl", "smolvlm")


def _image(height: int, width: int, seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


# Three sizes and aspect ratios, so families that tile or resize per image give different patch counts.
IMAGES = [_image(40, 64, 0), _image(64, 24, 1), _image(30, 30, 2)]


@pytest.fixture(scope="module")
def backbones(tiny_backbone_dirs):
    """family -> (path, model, processor) of the session's tiny backbones (conftest builds each on first use)."""
    cache = {}

    def get(family):
        if family not in cache:
            path = tiny_backbone_dirs[family]
            model = AutoModelForImageTextToText.from_pretrained(path).eval()
            cache[family] = (path, model, load_backbone_processor(path))
        return cache[family]

    return get


def _query(family: str, processor, images_per_text=((IMAGES[0],),)):
    placeholder = IMAGE_PLACEHOLDERS[family]
    texts = [" and ".join([placeholder] * len(images)) + " Is the dog in this photo?" for images in images_per_text]
    return processor(
        text=texts, images=[list(images) for images in images_per_text], return_tensors="pt", padding=True
    )


def _assert_same_batch(actual, expected):
    assert sorted(actual) == sorted(expected)
    for key in expected:
        assert torch.equal(torch.as_tensor(actual[key]), torch.as_tensor(expected[key])), key


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


@pytest.mark.parametrize("family", FAMILIES)
def test_processor_output_runs_forward_and_generate(backbones, family):
    _, model, processor = backbones(family)
    expected_class = (
        ImageOnlyBackboneProcessor
        if family in IMAGE_ONLY_FAMILIES
        else getattr(transformers, PROCESSOR_CLASSES[family])
    )
    assert isinstance(processor, expected_class)
    assert processor.chat_template is not None

    # Two texts with one and two images, so padding and the per-text image split are exercised.
    inputs = _query(family, processor, images_per_text=[(IMAGES[0],), (IMAGES[1], IMAGES[2])])
    with torch.no_grad():
        logits = model(**inputs).logits  # the model checks that image tokens and image features match in number
    assert logits.shape == (*inputs["input_ids"].shape, model.config.text_config.vocab_size)

    generated = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert generated.shape[0] == 2 and 1 <= generated.shape[1] - inputs["input_ids"].shape[1] <= 3


@pytest.mark.parametrize("family", FAMILIES)
def test_chat_template_writes_the_image_placeholder(backbones, family):
    _, _, processor = backbones(family)
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is <bo> here?"}]}]
    text = processor.tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    assert IMAGE_PLACEHOLDERS[family] in text and "Is <bo> here?" in text
    assert processor.apply_chat_template(conversation, add_generation_prompt=True) == text
    assert processor.tokenizer.decode(
        processor.tokenizer("Is the dog here?")["input_ids"], skip_special_tokens=True
    ) == ("Is the dog here?")


@pytest.mark.parametrize("family", FAMILIES)
def test_processor_rebuilds_from_its_parts(backbones, family):
    _, _, processor = backbones(family)
    config = backbone_processor_config(processor)
    assert config["processor_class"] == PROCESSOR_CLASSES[family]
    assert json.loads(json.dumps(config)) == config

    rebuilt = build_backbone_processor(processor.image_processor, processor.tokenizer, config, processor.chat_template)
    assert type(rebuilt) is type(processor)
    assert backbone_processor_config(rebuilt) == config
    assert rebuilt.chat_template == processor.chat_template
    _assert_same_batch(_query(family, rebuilt), _query(family, processor))


@pytest.fixture
def real_processor_without_video(monkeypatch):
    """Builds the real processor class with `video_processor=None` (test-only: skips the class check on it)."""
    check = ProcessorMixin.check_argument_for_proper_class

    def check_except_missing_video(self, name, argument):
        return None if name == "video_processor" and argument is None else check(self, name, argument)

    monkeypatch.setattr(ProcessorMixin, "check_argument_for_proper_class", check_except_missing_video)
    # SmolVLM refuses to build without num2words, which it only uses for videos.
    monkeypatch.setattr(transformers.models.smolvlm.processing_smolvlm, "num2words", str)

    def build(processor: ImageOnlyBackboneProcessor):
        real_class = getattr(transformers, processor.processor_class)
        return real_class(
            image_processor=processor.image_processor,
            tokenizer=processor.tokenizer,
            video_processor=None,
            chat_template=processor.chat_template,
            **processor.settings,
        )

    return build


@pytest.mark.parametrize("family", IMAGE_ONLY_FAMILIES)
def test_image_only_processor_matches_the_real_class(backbones, real_processor_without_video, family):
    _, _, processor = backbones(family)
    real = real_processor_without_video(processor)
    images_per_text = [(IMAGES[0],), (IMAGES[1], IMAGES[2])]
    _assert_same_batch(_query(family, processor, images_per_text), _query(family, real, images_per_text))
    # Text-only calls too.
    texts = ["Is <bo> here?", "The capital of France is"]
    _assert_same_batch(
        processor(text=texts, return_tensors="pt", padding=True), real(text=texts, return_tensors="pt", padding=True)
    )


def test_image_only_processor_rejects_mismatched_images(backbones):
    _, _, processor = backbones("qwen2_vl")
    with pytest.raises(ValueError, match="one <\\|image_pad\\|> per image"):
        processor(text=[IMAGE_PLACEHOLDERS["qwen2_vl"] + "Hi"], images=[[IMAGES[0], IMAGES[1]]])
    with pytest.raises(ValueError, match="no images"):
        processor(text=[IMAGE_PLACEHOLDERS["qwen2_vl"] + "Hi"])


def test_unknown_processor_class_is_refused(backbones):
    _, _, processor = backbones("llava")
    with pytest.raises(ValueError, match="Unknown backbone processor class"):
        build_backbone_processor(
            processor.image_processor, processor.tokenizer, {"processor_class": "NoSuchProcessor"}
        )
    with pytest.raises(ValueError, match="processor_class"):
        build_backbone_processor(processor.image_processor, processor.tokenizer, {"patch_size": 8})


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
