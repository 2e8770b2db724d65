"""The backbone processors of each family (processing_icpt/backbone_processing.py)."""

import json

import pytest
import torch
import transformers
from transformers.processing_utils import ProcessorMixin

from helpers.backbone_inputs import IMAGES
from helpers.tiny_backbones import FAMILIES, IMAGE_PLACEHOLDERS, PROCESSOR_CLASSES
from processing_icpt.backbone_processing import (
    ImageOnlyBackboneProcessor,
    backbone_processor_config,
    build_backbone_processor,
)

IMAGE_ONLY_FAMILIES = ("qwen2_vl", "qwen2_5_vl", "internvl", "smolvlm")


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
