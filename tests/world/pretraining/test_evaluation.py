"""The pretraining's evaluation (icpt/world/pretraining/evaluation.py)."""

import numpy as np

from icpt.world.pretraining.evaluation import weighted_accuracy
from icpt.world.tasks import WorldTasks
from icpt.world.world import World


def test_weighted_accuracy(compare_example):
    yes, no = (
        compare_example,
        WorldTasks(World(seed=0, num_identities=40)).compare(np.random.default_rng(1), positive=False),
    )
    result = weighted_accuracy([yes, yes, no], [True, False, False])
    assert result["positive"] == 0.5 and result["negative"] == 1.0 and result["weighted"] == 0.75
