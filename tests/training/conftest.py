"""The tiny LLaVA's processor, for the training tests."""

import pytest

from processing_icpt import ICPTProcessor


@pytest.fixture
def setup(tiny_backbone_dirs):
    path = tiny_backbone_dirs["llava"]
    processor = ICPTProcessor.from_backbone(path, max_prompt_length=4)
    return path, processor
