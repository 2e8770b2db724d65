"""Swapped twins: recognition episodes whose answer only the concept's rows can give.

A positive recognition episode ("Is <w7> in this photo?" -> "Yes") gets a twin with the same query photo and the same
question, in which <w7>'s reference photos (and masks and description) are another identity's, and whose answer is
the negative one ("No"). Without twins a reader adapter can answer many training episodes from the query photo and
the question alone (it fits 200 episodes exactly while ignoring the rows: swapping a concept's photos then changes
8 % of its answers); with them the same query must be answered both ways, and only the rows tell which. Each twin
comes with the positive again, its concept's photos reordered, so that positives and negatives stay as many as before:
twins alone shifted the reader's answers toward "no" and cost 0.04 of weighted recognition on the embedded default
(docs/default_model.md, "Why its rows go unread, and swapped twins").
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from datasets import Dataset, concatenate_datasets

TWIN_TAG = "swapped"
REORDERED_TAG = "reordered"


def _negative_answer(episodes: Dataset) -> str:
    """The answer the episodes give when the asked concept is absent (the most common one)."""
    answers = Counter(answer for task, target, present, answer in
                      zip(episodes["task"], episodes["target"], episodes["present"], episodes["answer"])
                      if task == "recognition" and target and target not in present)
    if not answers:
        raise ValueError("Swapped twins need negative recognition episodes to learn the negative answer from (a "
                         "recognition episode whose target is not in `present`); these episodes have none.")
    return answers.most_common(1)[0][0]


def _same_identity(a: dict, b: dict) -> bool:
    """Two concepts show the same identity: the same description, or (without descriptions) the same first photo."""
    if a["description"] and b["description"]:
        return a["description"] == b["description"]
    return a["references"][0] == b["references"][0]


def _permuted(concept: dict, order: list[int]) -> dict:
    return dict(concept, references=[concept["references"][i] for i in order],
                masks=[concept["masks"][i] for i in order])


def add_swapped_twins(episodes: Dataset, twins_per_positive: int = 1, seed: int = 0) -> Dataset:
    """
    `episodes` plus, per positive recognition episode, `twins_per_positive` swapped twins (each with another
    identity's photos) and as many copies of the positive with its concept's photos reordered (the first in reverse
    order, the others in random order), shuffled together with `seed`.

    The donor of a twin's photos is the concept of a randomly drawn recognition episode that shows another identity
    than every concept of the episode and than the episode's other twins. Twins carry the tag "swapped" and, for the
    asked concept, an empty `present`; the reordered positives the tag "reordered".

    Example:

    ```python
    >>> from icpt.world.world import World
    >>> from icpt.world.tasks import build_episodes
    >>> episodes = build_episodes(World(num_identities=60), "train", num_episodes=24, tasks=("recognition",))
    >>> with_twins = add_swapped_twins(episodes, twins_per_positive=2)
    >>> len(with_twins) - len(episodes) == 2 * 2 * sum(e["target"] in e["present"] for e in episodes)
    True
    ```
    """
    if twins_per_positive < 1:
        raise ValueError(f"twins_per_positive must be at least 1, not {twins_per_positive}.")
    recognition = [i for i, task in enumerate(episodes["task"]) if task == "recognition"]
    targets, present = episodes["target"], episodes["present"]  # columns: no photo decoded to find the positives
    positives = [i for i in recognition if targets[i] and targets[i] in present[i]]
    if not positives:
        return episodes
    negative = _negative_answer(episodes)
    rng = np.random.default_rng(seed)
    # rows as stored (photos as encoded bytes): decoding them and encoding them again took most of the time
    stored = episodes.with_format("arrow")

    def row(index: int) -> dict:
        return stored[index].to_pylist()[0]

    twins, reordered = [], []
    for i in positives:
        episode = row(i)
        taken = list(episode["concepts"])  # identities a donor must differ from
        asked = next(concept for concept in episode["concepts"] if concept["name"] == episode["target"])
        for copy in range(twins_per_positive):
            for _ in range(100):
                donor_episode = row(int(recognition[rng.integers(len(recognition))]))
                donor = donor_episode["concepts"][int(rng.integers(len(donor_episode["concepts"])))]
                if not any(_same_identity(donor, concept) for concept in taken):
                    break
            else:
                raise ValueError("Found no recognition episode of another identity to swap photos from in 100 draws: "
                                 f"{twins_per_positive} swapped twins per positive need episodes of at least "
                                 f"{twins_per_positive + 1} identities.")
            taken.append(donor)
            concepts = [dict(concept, references=donor["references"], masks=donor["masks"],
                             description=donor["description"]) if concept["name"] == episode["target"] else concept
                        for concept in episode["concepts"]]
            twins.append(dict(episode, concepts=concepts, answer=negative,
                              present=[name for name in episode["present"] if name != episode["target"]],
                              tags=episode["tags"] + [TWIN_TAG]))
            count = len(asked["references"])
            order = list(range(count))[::-1] if copy == 0 else [int(k) for k in rng.permutation(count)]
            reordered.append(dict(episode, tags=episode["tags"] + [REORDERED_TAG], concepts=[
                _permuted(concept, order) if concept["name"] == episode["target"] else concept
                for concept in episode["concepts"]]))
    added = Dataset.from_list(twins + reordered, features=episodes.features)
    return concatenate_datasets([episodes, added]).shuffle(seed=seed)
