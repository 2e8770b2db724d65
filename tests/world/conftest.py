"""The generated world the world tests share."""

import pytest

from icpt.world.world import World


@pytest.fixture(scope="module")
def world():
    return World(seed=3, num_identities=120)
