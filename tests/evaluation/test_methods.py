"""The methods (icpt/evaluation/methods.py): the reference photos each evaluation episode draws."""

import pytest

from helpers.evaluation import concept_dataset
from icpt.evaluation.methods import eval_episodes


def test_reference_draws_depend_on_the_seed_and_the_concept_only():
    dataset = concept_dataset()
    capped = eval_episodes(dataset, num_references=2, seed=0)
    assert all(c.num_references == 2 for e in capped for c in e.concepts)
    # the same concept in three episodes keeps the same two references, so it is added once per seed
    assert len({e.concepts[0].key for e in capped}) == 1
    assert [c.key for e in eval_episodes(dataset, 2, seed=0) for c in e.concepts] == [c.key for e in capped for c in e.concepts]
    draws = {eval_episodes(dataset, 2, seed=s)[0].concepts[0].key for s in range(6)}
    assert len(draws) > 1
    assert all(c.num_references == 4 for e in eval_episodes(dataset) for c in e.concepts)
    with pytest.raises(ValueError, match="at least 1"):
        eval_episodes(dataset, num_references=0)
