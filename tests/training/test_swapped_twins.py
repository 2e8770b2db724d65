"""Swapped twins (icpt/training/swapped_twins.py): recognition episodes that only the concept's rows can answer."""

import pytest
from datasets import Dataset

from icpt.episodes import EPISODE_FEATURES
from icpt.training.swapped_twins import REORDERED_TAG, TWIN_TAG, add_swapped_twins
from icpt.world.tasks import build_episodes
from icpt.world.world import World


@pytest.fixture(scope="module")
def episodes():
    return build_episodes(World(num_identities=60), "train", num_episodes=24, tasks=("recognition", "attribute"))


def _key(episode):
    return episode["question"], episode["image"].tobytes()


def test_every_positive_recognition_episode_gets_a_twin_with_another_identitys_photos(episodes):
    with_twins = add_swapped_twins(episodes, seed=0)
    positives = {_key(e): e for e in episodes if e["task"] == "recognition" and e["target"] in e["present"]}
    twins = [e for e in with_twins if TWIN_TAG in e["tags"]]
    assert positives and len(twins) == len(positives) and len(with_twins) == len(episodes) + 2 * len(twins)
    for twin in twins:
        source = positives[_key(twin)]  # the same query photo and question
        assert twin["answer"] == "No" and source["answer"] == "Yes"
        assert twin["target"] not in twin["present"]
        swapped = next(c for c in twin["concepts"] if c["name"] == twin["target"])
        original = next(c for c in source["concepts"] if c["name"] == source["target"])
        assert swapped["description"] != original["description"]
        assert [r.tobytes() for r in swapped["references"]] != [r.tobytes() for r in original["references"]]
    # every source episode is still there, and each positive once more with its photos in reverse order: as many
    # positives as negatives are added
    assert sum(not {TWIN_TAG, REORDERED_TAG} & set(e["tags"]) for e in with_twins) == len(episodes)
    for again in (e for e in with_twins if REORDERED_TAG in e["tags"]):
        source = positives[_key(again)]
        assert again["answer"] == source["answer"] == "Yes" and again["present"] == source["present"]
        concept = next(c for c in again["concepts"] if c["name"] == again["target"])
        original = next(c for c in source["concepts"] if c["name"] == source["target"])
        assert [r.tobytes() for r in concept["references"]] == [r.tobytes() for r in original["references"]][::-1]
    answers = [e["answer"] for e in with_twins if e["task"] == "recognition"]
    before = [e["answer"] for e in episodes if e["task"] == "recognition"]
    assert answers.count("Yes") - before.count("Yes") == answers.count("No") - before.count("No") == len(positives)


def test_several_twins_per_positive_have_different_donors_and_as_many_reordered_positives(episodes):
    with_twins = add_swapped_twins(episodes, twins_per_positive=3, seed=1)
    positives = {_key(e): e for e in episodes if e["task"] == "recognition" and e["target"] in e["present"]}
    donors, copies = {}, {}
    for episode in with_twins:
        concept = next((c for c in episode["concepts"] if c["name"] == episode["target"]), None)
        if TWIN_TAG in episode["tags"]:
            donors.setdefault(_key(episode), []).append(concept["description"])
        elif REORDERED_TAG in episode["tags"]:
            copies.setdefault(_key(episode), []).append([r.tobytes() for r in concept["references"]])
    assert set(donors) == set(copies) == set(positives)
    for key, source in positives.items():
        own = {c["description"] for c in source["concepts"]}
        assert len(donors[key]) == len(set(donors[key])) == 3 and not own & set(donors[key])
        original = [r.tobytes() for r in next(c for c in source["concepts"] if c["name"] == source["target"])["references"]]
        assert len(copies[key]) == 3 and original[::-1] in copies[key]  # the first reversed, the others shuffled
        assert all(sorted(photos) == sorted(original) for photos in copies[key])  # the same photos, reordered


def test_twins_per_positive_must_be_positive(episodes):
    with pytest.raises(ValueError, match="at least 1"):
        add_swapped_twins(episodes, twins_per_positive=0)


def test_twins_are_drawn_from_the_seed(episodes):
    def descriptions(dataset):
        return [[c["description"] for c in e["concepts"]] for e in dataset]

    assert descriptions(add_swapped_twins(episodes, seed=3)) == descriptions(add_swapped_twins(episodes, seed=3))
    assert descriptions(add_swapped_twins(episodes, seed=3)) != descriptions(add_swapped_twins(episodes, seed=4))


def test_episodes_without_positive_recognition_are_returned_as_they_are(episodes):
    attribute = episodes.filter(lambda task: task == "attribute", input_columns="task")
    assert add_swapped_twins(attribute) is attribute


def test_without_negative_recognition_episodes_the_negative_answer_is_unknown(episodes):
    only_positives = episodes.filter(lambda e: e["task"] == "recognition" and e["target"] in e["present"])
    with pytest.raises(ValueError, match="negative recognition episodes"):
        add_swapped_twins(only_positives)


def test_a_single_identity_has_no_donor():
    episode = build_episodes(World(num_identities=60), "train", num_episodes=40, tasks=("recognition",))
    positive = next(e for e in episode if e["target"] in e["present"] and len(e["concepts"]) == 1)
    negative = dict(positive, answer="No", present=[])
    single = Dataset.from_list([positive, negative], features=EPISODE_FEATURES)
    with pytest.raises(ValueError, match="another identity"):
        add_swapped_twins(single)



def test_twins_only_use_photos_of_the_source_episodes_as_stored(episodes):
    with_twins = add_swapped_twins(episodes, twins_per_positive=2, seed=0)
    assert with_twins.features == episodes.features

    def photos(dataset):
        rows = dataset.with_format("arrow")[:].to_pylist()  # the encoded bytes, as stored
        return {image["bytes"] for row in rows
                for image in [row["image"]] + [p for c in row["concepts"] for p in c["references"] + c["masks"]]}

    assert photos(with_twins) == photos(episodes)
