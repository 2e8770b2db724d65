"""Shared fixtures: tiny backbones of every supported family, built once per test session."""

import os
from pathlib import Path

import pytest
import torch

from helpers.images import random_image

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test may reach the Hub
torch.set_num_threads(1)  # tiny models: one thread is faster than two contending ones

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def tiny_backbone_dirs(tmp_path_factory):
    """`family -> saved tiny backbone folder`, each built on first use."""
    from helpers.tiny_backbones import build_tiny_backbone

    root = tmp_path_factory.mktemp("backbones")
    built = {}

    class Dirs(dict):
        def __missing__(self, family):
            built[family] = build_tiny_backbone(family, root / family)
            return built[family]

    return Dirs()


@pytest.fixture
def images():
    """A few small random RGB images of different sizes."""
    return [random_image(i, size=(32 + 8 * i, 40 - 4 * i)) for i in range(6)]


@pytest.fixture(scope="session")
def smollm2_llava_path():
    """A LLaVA backbone whose language half is the real SmolLM2-135M-Instruct (converted once, cached)."""
    from helpers.smollm2_backbone import build_smollm2_llava, smollm2_unavailable_reason

    reason = smollm2_unavailable_reason()
    if reason:
        pytest.skip(reason)
    return build_smollm2_llava()
