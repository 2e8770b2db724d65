"""A tiny ICPT checkpoint for the `icpt` commands, photos of two concepts, and the answer the library gives directly."""

import pytest
import torch
from PIL import Image

from helpers.cli import MAX_NEW_TOKENS
from helpers.images import random_image
from modeling_icpt import ICPTForConditionalGeneration
from processing_icpt import ICPTProcessor


@pytest.fixture(scope="module")
def checkpoint(tiny_backbone_dirs, tmp_path_factory):
    """A tiny, untrained ICPT checkpoint (projector + processor) around the tiny LLaVA backbone."""
    path = tiny_backbone_dirs["llava"]
    torch.manual_seed(0)
    processor = ICPTProcessor.from_backbone(path, max_prompt_length=4)
    model = ICPTForConditionalGeneration.from_backbone(
        path, max_prompt_length=4, min_prompt_length=2, projector_hidden_size=32, projector_heads=2, projector_layers=1
    )
    folder = tmp_path_factory.mktemp("icpt") / "checkpoint"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture
def photos(tmp_path):
    """my_photos/bo/ (two photos), my_photos/<kiki>/ (one photo and a text file to skip), and a query photo."""
    root = tmp_path / "my_photos"
    (root / "bo").mkdir(parents=True)
    (root / "<kiki>").mkdir()
    for i in range(2):
        random_image(i).save(root / "bo" / f"{i}.png")
    random_image(2).save(root / "<kiki>" / "0.jpg")
    (root / "<kiki>" / "notes.txt").write_text("not a photo")
    random_image(4, size=(48, 36)).save(tmp_path / "query.png")
    random_image(5).save(tmp_path / "other.png")
    return root


@pytest.fixture(scope="module")
def direct_answer(checkpoint):
    """`(bank, photo path, question) -> answer` through the Python API, to compare with the command line's."""
    model = ICPTForConditionalGeneration.from_pretrained(checkpoint).eval()
    processor = ICPTProcessor.from_pretrained(checkpoint)

    def answer(bank, image_path, question):
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        inputs = processor(messages=messages, images=[[Image.open(image_path).convert("RGB")]], concepts=bank)
        out = model.generate(**inputs, concepts=bank, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
        return processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()

    return answer
