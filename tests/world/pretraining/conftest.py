"""The pretraining's tokenizer and a compare question of the world, shared by its tests."""

import numpy as np
import pytest

from icpt.world.pretraining.modeling import build_tokenizer
from icpt.world.tasks import WorldTasks
from icpt.world.world import World


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="module")
def compare_example():
    world = World(seed=0, num_identities=40)
    return WorldTasks(world).compare(np.random.default_rng(0), num_references=2)
