"""The questions a run asks: the generated world's held-out episodes (`world_episodes`), drawn stratified so every
split has enough positives and negatives (`select_stratified`), and each question's stable id (`question_id`)."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
from datasets import concatenate_datasets

from icpt.world.tasks import build_episodes, generic_episodes
from icpt.world.world import World

from .methods import image_key
from .scoring import SPLITS

# The generated world the default backbone is pretrained on (examples/pretrain_world_backbone.py defaults).
DEFAULT_WORLD_SEED = 0
DEFAULT_WORLD_IDENTITIES = 1000
# Power: recognition questions per method (balanced yes / no), at least this many per split, and questions
# per other task for its ceiling; test-time training (seconds per concept) and the sweep answer subsamples.
DEFAULT_RECOGNITION_QUESTIONS = 1200
DEFAULT_MIN_PER_SPLIT = 320
DEFAULT_TASK_QUESTIONS = 100
# Generic questions without concepts (the backbone's own describe-object/scene questions): what a reader
# adapter costs the answers that need no concept. 400 so that the paired word-F1 interval (about +-0.008 for
# the default's adapter) can place the cost within the claim's 0.01; 200 left it at +-0.011, undecided.
DEFAULT_GENERIC_QUESTIONS = 400
NON_RECOGNITION_TASKS = ("presence", "vqa", "text_qa", "attribute", "caption")


def select_stratified(answers: Sequence[bool], tags: Sequence[Sequence[str]], total: int, min_per_split: int,
                      splits: Sequence[str], seed: int = 0) -> list[int]:
    """Indices of `total` questions, half positive and half negative, with at least `min_per_split` of each split.

    Questions of each split short of its quota are taken first (positives and negatives in turn, as far as
    the pool has them), then the rest is filled at random to balance positives and negatives.

    Example:

    ```python
    >>> select_stratified([True, False] * 10, [["b"]] * 4 + [[]] * 16, total=8, min_per_split=3, splits=["b"])
    [0, 1, 2, 4, 5, 7, 9, 12]
    ```
    """
    rng = np.random.default_rng(seed)
    order = [int(i) for i in rng.permutation(len(answers))]
    chosen: set[int] = set()
    for split in splits:
        missing = min_per_split - sum(1 for i in chosen if split in tags[i])
        yes = [i for i in order if i not in chosen and split in tags[i] and answers[i]]
        no = [i for i in order if i not in chosen and split in tags[i] and not answers[i]]
        turns = [i for pair in zip(yes, no) for i in pair] + yes[len(no):] + no[len(yes):]
        chosen.update(turns[:max(missing, 0)])
    for want, kind in ((total // 2, True), (total - total // 2, False)):
        have = sum(1 for i in chosen if answers[i] == kind)
        chosen.update([i for i in order if i not in chosen and answers[i] == kind][:max(want - have, 0)])
    return sorted(chosen)


def world_episodes(world_seed: int = DEFAULT_WORLD_SEED, num_identities: int = DEFAULT_WORLD_IDENTITIES,
                   num_recognition: int = DEFAULT_RECOGNITION_QUESTIONS, min_per_split: int = DEFAULT_MIN_PER_SPLIT,
                   task_questions: int = DEFAULT_TASK_QUESTIONS,
                   generic_questions: int = DEFAULT_GENERIC_QUESTIONS, split: str | None = None) -> Callable:
    """A function `seed -> Dataset` of the generated world's held-out episodes (one question each).

    Held-out identities only (never seen by the backbone or the projectors); references from environment
    set A, queries from A or B (tagged `environment_shift`). `num_recognition` recognition questions, half
    positive, drawn stratified (`select_stratified`) from a larger pool so that each split (environment
    shift, look-alikes, multi-concept scenes) has at least `min_per_split`; plus `task_questions` questions
    of each other task, on which the ceiling decides whether the task is measurable; and `generic_questions`
    questions that name no concept (`generic_episodes`), on which methods asked through a reader adapter
    show what it costs the backbone's own answers.

    With `split` (one of `SPLITS` but "all"), only the recognition questions of that split among the same
    `num_recognition`, the same questions a run without it asks there: a costly method (test-time training)
    can then spend its subsample on one split.
    """
    splits = [name for name in SPLITS if name != "all"]
    if split is not None and split not in splits:
        raise ValueError(f"Unknown split {split!r}: choose one of {', '.join(splits)}.")
    world = World(seed=world_seed, num_identities=num_identities)

    def episodes(seed: int):
        pool, chunk = [], 0
        while True:  # draw recognition episodes in chunks until every split can meet its quota
            pool.append(build_episodes(world, "held_out", max(2 * num_recognition, 100), seed=seed * 1000 + chunk,
                                       tasks=("recognition",)))
            chunk += 1
            tags = [t for part in pool for t in part["tags"]]
            counts = Counter(tag for row in tags for tag in row)
            if len(tags) >= num_recognition and all(counts[s] >= min_per_split for s in splits):
                break
            if chunk >= 50:
                raise RuntimeError(f"Could not draw {min_per_split} recognition questions per split in {len(tags)} episodes.")
        pool = concatenate_datasets(pool)
        answers = [answer == "Yes" for answer in pool["answer"]]
        chosen = select_stratified(answers, pool["tags"], num_recognition, min_per_split, splits, seed=seed)
        parts = [pool.select(chosen)]
        if split is not None:
            return parts[0].filter(lambda tags: split in tags, input_columns="tags")  # no image decoded
        if task_questions:
            parts.append(build_episodes(world, "held_out", task_questions * len(NON_RECOGNITION_TASKS),
                                        seed=seed * 1000 + 999, tasks=NON_RECOGNITION_TASKS))
        if generic_questions:
            parts.append(generic_episodes(world, "held_out", generic_questions, seed=seed * 1000 + 998))
        return concatenate_datasets(parts)

    episodes.description = (
        f"generated world (seed {world_seed}, {num_identities} identities), held-out identities: {num_recognition} "
        f"recognition questions (half positive, at least {min_per_split} per split) and {task_questions} of each "
        f"other task, {generic_questions} generic questions without concepts"
        if split is None else
        f"generated world (seed {world_seed}, {num_identities} identities), held-out identities: the recognition "
        f"questions of the split {split!r} among {num_recognition} (half positive, at least {min_per_split} per split)"
    )
    return episodes


def question_id(episode) -> str:
    """A short id of a question from its content (question, query image, references), stable across runs."""
    parts = [episode.question, image_key(episode.image_value) if episode.image_value else ""]
    parts += [concept.key for concept in episode.concepts]
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:12]
