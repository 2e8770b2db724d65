"""Fixtures every test folder shares: tiny backbones of every supported family (built once per session and loaded
once per module), the tiny LLaVA, small images, the SmolLM2 backbone; and one torch thread per test."""

import os
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForImageTextToText

from helpers.images import random_image
from processing_icpt.backbone_processing import load_backbone_processor

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


@pytest.fixture(autouse=True)
def one_thread():
    # on 2 shared cores, two spinning OpenMP threads made these runs ~10x slower than one
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_llava(tiny_backbone_dirs):
    return tiny_backbone_dirs["llava"]


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
