"""Shared fixtures: tiny backbones of every supported family, built once per test session."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

# tests import their helper modules (tiny_backbones, smollm2_backbone, hub_server) by name
sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test may reach the Hub
torch.set_num_threads(1)  # tiny models: one thread is faster than two contending ones

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def tiny_backbone_dirs(tmp_path_factory):
    """`family -> saved tiny backbone folder`, each built on first use."""
    from tiny_backbones import build_tiny_backbone

    root = tmp_path_factory.mktemp("backbones")
    built = {}

    class Dirs(dict):
        def __missing__(self, family):
            built[family] = build_tiny_backbone(family, root / family)
            return built[family]

    return Dirs()


def random_image(seed: int, size=(40, 32), mode="RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).convert(mode)


@pytest.fixture
def images():
    """A few small random RGB images of different sizes."""
    return [random_image(i, size=(32 + 8 * i, 40 - 4 * i)) for i in range(6)]


@pytest.fixture(scope="session")
def smollm2_llava_path():
    """A LLaVA backbone whose language half is the real SmolLM2-135M-Instruct (converted once, cached)."""
    from smollm2_backbone import build_smollm2_llava, smollm2_unavailable_reason

    reason = smollm2_unavailable_reason()
    if reason:
        pytest.skip(reason)
    return build_smollm2_llava()
