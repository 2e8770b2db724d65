"""The questions a run asks (icpt/evaluation/episodes.py): stratified selection, the world's held-out episodes."""

import numpy as np
import pytest

from icpt.episodes import EPISODE_FEATURES, TASKS
from icpt.evaluation.episodes import select_stratified, world_episodes


def test_stratified_selection_meets_every_quota_and_balances_answers():
    rng = np.random.default_rng(0)
    answers = [bool(rng.random() < 0.5) for _ in range(400)]
    tags = [[t for t, p in (("rare", 0.08), ("common", 0.4)) if rng.random() < p] for _ in range(400)]
    chosen = select_stratified(answers, tags, total=100, min_per_split=25, splits=["rare", "common"], seed=1)
    assert len(chosen) == 100 and len(set(chosen)) == 100
    assert sum(answers[i] for i in chosen) == 50
    assert sum("rare" in tags[i] for i in chosen) >= 25 and sum("common" in tags[i] for i in chosen) >= 25
    assert chosen == select_stratified(answers, tags, total=100, min_per_split=25, splits=["rare", "common"], seed=1)


def test_world_episodes_are_stratified_held_out_episodes_per_seed():
    source = world_episodes(world_seed=0, num_identities=60, num_recognition=12, min_per_split=3, task_questions=1,
                            generic_questions=2)
    first, second = source(0), source(1)
    assert first.features == EPISODE_FEATURES
    recognition = [(a, t) for task, a, t in zip(first["task"], first["answer"], first["tags"]) if task == "recognition"]
    assert len(recognition) >= 12 and sum(a == "Yes" for a, _ in recognition) >= 6
    for split in ("environment_shift", "look_alike", "multi_concept"):
        assert sum(split in t for _, t in recognition) >= 3, split
    assert sorted(t for t in first["task"] if t not in ("recognition", "generic")) == sorted(set(TASKS) - {"recognition"})
    generic = [i for i, task in enumerate(first["task"]) if task == "generic"]
    assert len(generic) == 2 and all(first[i]["concepts"] == [] and first[i]["answer"] for i in generic)
    assert first["question"] != second["question"]
    assert "held-out" in source.description


def test_a_split_alone_is_the_same_questions_of_that_split():
    settings = dict(world_seed=0, num_identities=60, num_recognition=12, min_per_split=3, task_questions=1,
                    generic_questions=2)
    everything = world_episodes(**settings)(0)
    look_alikes = world_episodes(**settings, split="look_alike")
    questions = look_alikes(0)
    expected = [e for e in everything if e["task"] == "recognition" and "look_alike" in e["tags"]]
    assert len(questions) == len(expected) >= 3
    assert set(questions["task"]) == {"recognition"} and all("look_alike" in tags for tags in questions["tags"])
    assert [(e["question"], e["answer"], e["target"], e["present"]) for e in questions] == [
        (e["question"], e["answer"], e["target"], e["present"]) for e in expected]
    assert "look_alike" in look_alikes.description
    with pytest.raises(ValueError, match="Unknown split 'twins'.*look_alike"):
        world_episodes(**settings, split="twins")
