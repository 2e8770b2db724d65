"""Tasks on the generated world: generic pretraining data for the base LVLM, and ICPT episodes.

* `WorldTasks` draws the *generic* examples the base LVLM is pretrained on: describe an object,
  describe a scene, compare ("Is the object of the first images also in the last one?" after
  1-5 reference images and a query), and named questions (the layout of an ICPT episode with the
  plain noun "the object" for a label: "the object is <image> <image>.", then a query scene and a
  recognition or attribute question about "the object"), and labelled questions (an ICPT episode of
  any task, recognition, presence, attribute, caption, either/or or VQA, with its concepts' reference photos in context
  under their labels, "<w12> is <image> <image>.", the way the `raw_references` baseline asks: it
  teaches the backbone the evaluation's answer formats). Only labelled questions contain concept labels.
* `build_episodes` writes ICPT episodes (`icpt.episodes.EPISODE_FEATURES`) for the tasks
  recognition, presence, attribute, caption, text_qa and vqa. Training episodes use training
  identities in environment set A only; held-out episodes use held-out identities, references from
  set A and queries from set A or B (tagged ``environment_shift``).

Example:

```python
>>> import numpy as np
>>> from icpt.world.world import World
>>> from icpt.world.tasks import WorldTasks, build_episodes
>>> world = World(seed=0, num_identities=100)
>>> example = WorldTasks(world).compare(np.random.default_rng(0))
>>> example.question, example.answer in ("yes", "no")
('Is the object of the first images also in the last one?', True)
>>> episodes = build_episodes(world, "held_out", num_episodes=6)
>>> sorted(set(episodes["task"]))
['attribute', 'caption', 'presence', 'recognition', 'text_qa', 'vqa']
```
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Sequence

import numpy as np
from datasets import Dataset, Features, List, Value
from datasets import Image as ImageFeature
from PIL import Image

from icpt.episodes import EPISODE_FEATURES, TASKS
from modeling_icpt.input_checks import LABEL_PATTERN

from .world import (
    ATTRIBUTE_VALUES,
    ACCESSORIES,
    ATTRIBUTES,
    COLOURS,
    MARKS,
    PATTERNS,
    SHAPES,
    SIDES,
    Identity,
    RenderBank,
    World,
    with_article,
)

# ---------------------------------------------------------------------------------------------
# Texts. Every sentence the world writes comes from these templates, so `vocabulary()` is exact.
# ---------------------------------------------------------------------------------------------
COMPARE_QUESTION = "Is the object of the first images also in the last one?"
DESCRIBE_OBJECT_QUESTION = "Describe the object."
DESCRIBE_SCENE_QUESTION = "Describe the objects from left to right."
NO_OBJECTS = "nothing."
PRETRAINING_TASKS = (
    "describe_object", "describe_scene", "compare", "named_question", "labelled_question", "label_copy",
)
# Named questions put the references where ICPT puts a concept's prompt (a preamble that says what
# the name stands for) and ask the episode questions about it, with a plain noun as the name.
GENERIC_NAME = "the object"
NAMED_PREAMBLE = "{name} is {images}.\n"

RECOGNITION_QUESTION = "Can you see {name} in this photo? Answer with a single word or phrase."
PRESENCE_QUESTION = "Which of {names} are in this photo?"
CAPTION_QUESTION = "Write a short caption for this photo that names any of {names} that appear."
ATTRIBUTE_QUESTIONS = {
    "colour": "What colour is {name}?",
    "shape": "What shape is {name}?",
    "colour2": "What is the second colour of {name}?",
    "pattern": "What pattern does {name} have?",
    "mark": "Which mark does {name} have?",
    "side": "Where is the mark on {name}?",
    "accessory": "What does {name} wear?",
}
TEXT_QA_QUESTIONS = {
    "colour": "Is {name} {first} or {second}?",
    "shape": "Is {name} {first} or {second}?",
    "colour2": "Is the second colour of {name} {first} or {second}?",
    "pattern": "Does {name} have {first} or {second}?",
    "mark": "Does {name} have {first} or {second}?",
    "side": "Is the mark of {name} {first} or {second}?",
    "accessory": "Does {name} wear {first} or {second}?",
}
NUM_CONCEPT_LABELS = 1000  # episodes name their concepts <w0> ... <w999>
LABELLED_MAX_REFERENCES = 3  # photos per concept in a labelled question (fewer than episodes' 5: shorter sequences)
VQA_POSITION_QUESTION = "Is {name} on the left or on the right of this photo?"
# Label copying (text only): write a list of labels back, or name the label a description was given.
COPY_LIST_QUESTION = "Write {names}."
COPY_DESCRIBED_PREAMBLE = "{name} is {description}.\n"
COPY_DESCRIBED_QUESTION = "What is {description}?"
VQA_NEIGHBOUR_QUESTION = "Is {name} next to {first} or {second}?"
EXTRA_WORDS = (
    "yes",
    "no",
    "none",
    "nothing",
    "a",
    "an",
    "photo",
    "of",
    "from",
    "left",
    "to",
    "right",
    "and",
    "on",
    "the",
)


def attribute_answer(identity: Identity, attribute: str) -> str:
    """The short phrase that answers an attribute question, e.g. "blue stripes" or "on the left"."""
    if attribute == "pattern":
        return identity.pattern_text
    if attribute in ("shape", "mark"):
        return with_article(getattr(identity, attribute))
    if attribute == "side":
        return f"on the {identity.side}"
    if attribute == "accessory":
        return identity.accessory_text
    return getattr(identity, attribute)


def either_or_attribute(question: str, answer: str) -> str | None:
    """The attribute a text either/or question asks about (`TEXT_QA_QUESTIONS`), read back from its text and its
    right answer, or None for any other question. Colour and shape share a wording, as do pattern and mark: the
    answer tells them apart (a shape or a mark is one of `SHAPES` / `MARKS` with its article).

    Example:

    ```python
    >>> either_or_attribute("Does <w3> have a dot or a bar?", "a bar")
    'mark'
    >>> either_or_attribute("Is the object pink or orange?", "pink")
    'colour'
    ```
    """
    question = question.strip().splitlines()[-1] if question.strip() else question
    for attribute, template in TEXT_QA_QUESTIONS.items():
        pattern = re.escape(template).replace(re.escape("{name}"), r"(?:<[^>\s]+>|the object)")
        pattern = pattern.replace(re.escape("{first}"), "(.+)").replace(re.escape("{second}"), "(.+)")
        if not re.fullmatch(pattern, question):
            continue
        value = answer.strip().split(" ", 1)[-1]  # "a triangle" -> "triangle"
        if attribute in ("colour", "shape") and (attribute == "shape") != (value in SHAPES):
            continue
        if attribute in ("pattern", "mark") and (attribute == "mark") != (value in MARKS):
            continue
        return attribute
    return None


def vocabulary() -> list[str]:
    """Every word and punctuation mark that world texts use (lower-cased), concept labels aside."""
    texts = [
        COMPARE_QUESTION,
        DESCRIBE_OBJECT_QUESTION,
        DESCRIBE_SCENE_QUESTION,
        NO_OBJECTS,
        RECOGNITION_QUESTION,
        PRESENCE_QUESTION,
        CAPTION_QUESTION,
        VQA_POSITION_QUESTION,
        VQA_NEIGHBOUR_QUESTION,
        COPY_LIST_QUESTION,
        COPY_DESCRIBED_PREAMBLE,
        COPY_DESCRIBED_QUESTION,
        NAMED_PREAMBLE,
        GENERIC_NAME,
        ", ; . ? an with",
    ]
    texts += list(ATTRIBUTE_QUESTIONS.values()) + list(TEXT_QA_QUESTIONS.values()) + list(EXTRA_WORDS)
    texts += list(COLOURS) + list(SHAPES) + list(PATTERNS) + list(MARKS) + list(SIDES) + list(ACCESSORIES)
    words = set()
    for text in texts:
        words.update(split_words(re.sub(r"\{\w+\}", " ", text)))
    return sorted(words)


def split_words(text: str) -> list[str]:
    """Lower-cased words and punctuation marks, with ``<label>``-style names kept whole."""
    return re.findall(r"<[^<>\s]+>|\w+|[^\w\s]", text.lower())


# ---------------------------------------------------------------------------------------------
# Generic pretraining tasks for the base LVLM
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class WorldExample:
    """One generic example: images (uint8 HxWx3, the query last), question, answer.

    ``identity_ids`` and ``environments`` list everything the images show, for split checks.
    """

    images: list[np.ndarray]
    question: str
    answer: str
    task: str
    tags: list[str]
    identity_ids: list[int]
    environments: list[str]


class WorldTasks:
    """Draws generic examples (no concept labels) about one identity split of a world.

    Args:
        world: the world.
        identities: ``"train"`` (the default; for pretraining) or ``"held_out"`` (for evaluation).
        query_environments: the environment sets queries are drawn from. References and described
            objects always come from set A.
        bank: optional pre-rendered single-identity images (from `World.prerender`) of exactly
            these identities in set A, used instead of rendering references and single queries.
        look_alike_fraction: share of comparisons whose negative is the anchor's look-alike twin.
        scene_query_fraction: share of comparison queries that show 2-3 objects instead of one.

    Example:

    ```python
    >>> import numpy as np
    >>> from icpt.world.world import World
    >>> tasks = WorldTasks(World(num_identities=50))
    >>> example = tasks.describe_object(np.random.default_rng(0))
    >>> example.question, len(example.images)
    ('Describe the object.', 1)
    ```
    """

    def __init__(
        self,
        world: World,
        identities: str = "train",
        query_environments: Sequence[str] = ("A",),
        bank: RenderBank | None = None,
        look_alike_fraction: float = 0.25,
        scene_query_fraction: float = 0.3,
    ):
        self.world = world
        self.identity_ids = world.split(identities)
        self.query_environments = [env for name in query_environments for env in world.environment_set(name)]
        self.reference_environments = world.environment_set("A")
        self.look_alike_fraction = look_alike_fraction
        self.scene_query_fraction = scene_query_fraction
        self.twins = [i for i in self.identity_ids if i in world.look_alike_of]
        self.bank = bank
        if bank is not None:
            allowed = set(self.identity_ids)
            if not set(bank.identity_ids.tolist()) <= allowed:
                raise ValueError(
                    f"The render bank holds identities outside the {identities!r} split; "
                    f"prerender `world.split({identities!r})`."
                )
            if any(world.environments[i].set != "A" for i in np.unique(bank.environment_index)):
                raise ValueError(
                    "The render bank holds environments outside set A; prerender with environment_set='A'."
                )
            self._bank_row = {int(i): row for row, i in enumerate(bank.identity_ids)}
        self._episodes = _EpisodeBuilder(world, identities, max_references=LABELLED_MAX_REFERENCES)

    # -- images -------------------------------------------------------------------------------
    def _single(self, identity_id: int, rng: np.random.Generator, environments) -> tuple[np.ndarray, str]:
        """One image of one identity: from the bank when it has it and set A is asked for."""
        if self.bank is not None and environments is self.reference_environments and identity_id in self._bank_row:
            row = self._bank_row[identity_id]
            column = int(rng.integers(self.bank.images.shape[1]))
            return self.bank.images[row, column], self.world.environments[
                self.bank.environment_index[row, column]
            ].name
        environment = environments[int(rng.integers(len(environments)))]
        return self.world.render_array([identity_id], environment, rng), environment.name

    def _scene(self, identity_ids: list[int], rng: np.random.Generator, environments) -> tuple[Image.Image, dict, str]:
        environment = environments[int(rng.integers(len(environments)))]
        image, masks = self.world.render(identity_ids, environment, rng)
        return image, masks, environment.name

    def _others(self, exclude: set[int], count: int, rng: np.random.Generator) -> list[int]:
        pool = [i for i in self.identity_ids if i not in exclude]
        return [int(i) for i in rng.choice(pool, size=count, replace=False)]

    # -- tasks --------------------------------------------------------------------------------
    def describe_object(self, rng: np.random.Generator) -> WorldExample:
        identity_id = int(rng.choice(self.identity_ids))
        image, environment = self._single(identity_id, rng, self.reference_environments)
        return WorldExample(
            [image],
            DESCRIBE_OBJECT_QUESTION,
            self.world.identities[identity_id].description,
            "describe_object",
            [],
            [identity_id],
            [environment],
        )

    def describe_scene(self, rng: np.random.Generator) -> WorldExample:
        count = int(rng.choice(5, p=[0.1, 0.2, 0.3, 0.2, 0.2]))
        identity_ids = self._others(set(), count, rng)
        image, masks, environment = self._scene(identity_ids, rng, self.reference_environments)
        if not identity_ids:
            return WorldExample(
                [np.asarray(image)], DESCRIBE_SCENE_QUESTION, NO_OBJECTS, "describe_scene", [], [], [environment]
            )
        ordered = sorted(identity_ids, key=lambda i: _centre_x(masks[i]))
        answer = "; ".join(self.world.identities[i].description for i in ordered) + "."
        return WorldExample(
            [np.asarray(image)], DESCRIBE_SCENE_QUESTION, answer, "describe_scene", [], identity_ids, [environment]
        )

    def compare(
        self,
        rng: np.random.Generator,
        num_references: int | None = None,
        positive: bool | None = None,
        look_alike: bool | None = None,
        anchor: int | None = None,
    ) -> WorldExample:
        """References of one identity, then a query that does or does not show it.

        Args:
            num_references: 1-5 (random when None).
            positive: whether the query shows the anchor (random when None).
            look_alike: whether the anchor has a look-alike twin and the negative is that twin
                (random with ``look_alike_fraction`` when None).
            anchor: the identity of the references (random when None).
        """
        if num_references is None:
            num_references = int(rng.integers(1, 6))
        if look_alike is None:
            look_alike = bool(rng.random() < self.look_alike_fraction)
        if anchor is None:
            anchor = int(rng.choice(self.twins if look_alike else self.identity_ids))
        if positive is None:
            positive = bool(rng.random() < 0.5)
        twin = self.world.look_alike_of.get(anchor)
        if look_alike and twin is None:
            raise ValueError(f"Identity {anchor} has no look-alike twin; pick one from `world.look_alike_pairs`.")
        references = [self._single(anchor, rng, self.reference_environments) for _ in range(num_references)]
        shown = anchor if positive else (twin if look_alike else self._others({anchor}, 1, rng)[0])
        if rng.random() < self.scene_query_fraction:
            exclude = {anchor, shown} | ({twin} if twin is not None else set())
            scene = [shown] + self._others(exclude, int(rng.integers(1, 3)), rng)
            scene = [scene[i] for i in rng.permutation(len(scene))]
            image, _, environment = self._scene(scene, rng, self.query_environments)
            query = (np.asarray(image), environment)
        else:
            scene = [shown]
            query = self._single(shown, rng, self.query_environments)
        tags = (["look_alike"] if look_alike else []) + (
            ["environment_shift"] if self.world.environment(query[1]).set == "B" else []
        )
        images = [image for image, _ in references] + [query[0]]
        environments = [environment for _, environment in references] + [query[1]]
        return WorldExample(
            images, COMPARE_QUESTION, "yes" if positive else "no", "compare", tags, [anchor] + scene, environments
        )

    def named_question(
        self,
        rng: np.random.Generator,
        num_references: int | None = None,
        kind: str | None = None,
        positive: bool | None = None,
        look_alike: bool | None = None,
        anchor: int | None = None,
    ) -> WorldExample:
        """A recognition or attribute question about "the object", defined by reference images in a
        preamble, asked of a query scene: the layout of an ICPT episode, with a plain noun for the label.

        The question holds its own ``<image>`` placeholders (the references, in the preamble); the
        query image follows the preamble. ``images`` lists the references, then the query.

        Args:
            num_references: 1-5 (random when None).
            kind: ``"recognition"`` or one of the attributes (random when None; half are recognition).
            positive, look_alike, anchor: as in `compare` (recognition only: attribute questions
                always show the object and never take a look-alike).
        """
        if num_references is None:
            num_references = int(rng.integers(1, 6))
        if kind is None:
            kind = "recognition" if rng.random() < 0.5 else ATTRIBUTES[int(rng.integers(len(ATTRIBUTES)))]
        if kind != "recognition" and (positive is False or look_alike):
            raise ValueError("Attribute questions show the object: only recognition takes negatives or look-alikes.")
        if look_alike is None:
            look_alike = kind == "recognition" and bool(rng.random() < self.look_alike_fraction)
        if anchor is None:
            anchor = int(rng.choice(self.twins if look_alike else self.identity_ids))
        twin = self.world.look_alike_of.get(anchor)
        if look_alike and twin is None:
            raise ValueError(f"Identity {anchor} has no look-alike twin; pick one from `world.look_alike_pairs`.")
        present = kind != "recognition" or (bool(rng.random() < 0.5) if positive is None else positive)
        references = [self._single(anchor, rng, self.reference_environments) for _ in range(num_references)]
        exclude = {anchor} | ({twin} if twin is not None else set())
        scene = self._others(exclude, int(rng.integers(0, 3)), rng)
        if present:
            scene.append(anchor)
        elif look_alike or rng.random() < 0.5:
            scene.append(twin if look_alike else self._others(exclude | set(scene), 1, rng)[0])
        scene = [scene[i] for i in rng.permutation(len(scene))]
        image, _, environment = self._scene(scene, rng, self.query_environments)
        preamble = NAMED_PREAMBLE.format(name=GENERIC_NAME, images=" ".join(["<image>"] * num_references))
        if kind == "recognition":
            question = RECOGNITION_QUESTION.format(name=GENERIC_NAME)
            answer = "Yes" if present else "No"
        else:
            question = ATTRIBUTE_QUESTIONS[kind].format(name=GENERIC_NAME)
            answer = attribute_answer(self.world.identities[anchor], kind)
        tags = [kind] + (["look_alike"] if look_alike else []) + (
            ["environment_shift"] if self.world.environment(environment).set == "B" else []
        )
        return WorldExample(
            [image for image, _ in references] + [np.asarray(image)],
            preamble + "<image> " + question,
            answer,
            "named_question",
            tags,
            [anchor] + scene,
            [environment for _, environment in references] + [environment],
        )

    def labelled_question(self, rng: np.random.Generator, task: str | None = None) -> WorldExample:
        """An ICPT episode asked with its named concepts' reference photos in context under their labels.

        The prompt is the one the `raw_references` baseline builds: for each concept the question names,
        "<w12> is <image> <image>." (1-3 photos), then the query image (none for text questions) and the
        question; the answer is the episode's ("<w3>, <w7>", "blue", "a photo of <w3> and ..., from left to
        right."). It teaches the answer formats of the evaluation's tasks with labels bound to photos.

        Args:
            task: one of the episode tasks `TASKS` (random when None).
        """
        if task is None:
            task = TASKS[int(rng.integers(len(TASKS)))]
        if task not in TASKS:
            raise ValueError(f"Unknown labelled task {task!r}; expected one of {TASKS}.")
        row = self._episodes.episode(task, rng)
        named = set(LABEL_PATTERN.findall(row["question"])) or {c["name"] for c in row["concepts"]}
        concepts = [concept for concept in row["concepts"] if concept["name"] in named]
        preamble = "".join(
            NAMED_PREAMBLE.format(name=concept["name"], images=" ".join(["<image>"] * len(concept["references"])))
            for concept in concepts
        )
        images = [np.asarray(image) for concept in concepts for image in concept["references"]]
        question = preamble + row["question"]
        if row["image"] is not None:
            images.append(np.asarray(row["image"]))
            question = preamble + "<image> " + row["question"]
        return WorldExample(
            images, question, row["answer"], "labelled_question", [task] + row["tags"], row["identity_ids"],
            row["environments"],
        )

    def label_copy(self, rng: np.random.Generator) -> WorldExample:
        """A text-only example whose answer copies words from its question.

        A third write a list of 3-8 labels back in order ("Write <w3>, <w41>." -> "<w3>, <w41>"); a third give
        1-4 labels a description each and ask which label a description was given ("<w3> is a red circle
        ....\nWhat is a red circle ...?" -> "<w3>"); a third give one label a description and ask an either/or
        question about it ("<w3> is a red circle ....\nIs <w3> blue or red?" -> "red"). Labels are spelled in 3-5
        word pieces, so a model reads one back only once it has learned to copy (attention heads that find where
        the current piece occurred and bring the next one); these examples teach that on cheap, dense text
        before the labelled questions need it.
        """
        kind = rng.integers(3)
        if kind == 0:
            names = concept_labels(rng, int(rng.integers(3, 9)))
            question = COPY_LIST_QUESTION.format(names=", ".join(names))
            return WorldExample([], question, ", ".join(names), "label_copy", [], [], [])
        count = 1 if kind == 2 else int(rng.integers(1, 5))
        names = concept_labels(rng, count)
        identity_ids = [int(i) for i in rng.choice(self.identity_ids, size=count, replace=False)]
        descriptions = [self.world.identities[i].description for i in identity_ids]
        preamble = "".join(
            COPY_DESCRIBED_PREAMBLE.format(name=name, description=description)
            for name, description in zip(names, descriptions)
        )
        if kind == 2:
            identity = self.world.identities[identity_ids[0]]
            attribute, wrong = self._episodes._wrong_option(identity, None, rng)
            options = [attribute_answer(identity, attribute), wrong]
            first, second = (options[i] for i in rng.permutation(2))
            question = TEXT_QA_QUESTIONS[attribute].format(name=names[0], first=first, second=second)
            return WorldExample([], preamble + question, options[0], "label_copy", [], identity_ids, [])
        asked = int(rng.integers(count))
        question = preamble + COPY_DESCRIBED_QUESTION.format(description=descriptions[asked])
        return WorldExample([], question, names[asked], "label_copy", [], identity_ids, [])

    def sample(self, rng: np.random.Generator, task: str) -> WorldExample:
        if task not in PRETRAINING_TASKS:
            raise ValueError(f"Unknown pretraining task {task!r}; expected one of {PRETRAINING_TASKS}.")
        return getattr(self, task)(rng)


def concept_labels(rng: np.random.Generator, count: int) -> list[str]:
    """`count` distinct concept labels of the episodes' kind, e.g. ``["<w12>", "<w907>"]``."""
    return [f"<w{n}>" for n in rng.choice(NUM_CONCEPT_LABELS, size=count, replace=False)]


def _centre_x(mask: np.ndarray) -> float:
    columns = np.nonzero(mask.any(axis=0))[0]
    return float(columns.mean()) if len(columns) else 0.0


def pretraining_dataset(world: World, num_examples: int, seed: int = 0, tasks: Sequence[str] = PRETRAINING_TASKS):
    """A `datasets.Dataset` of generic pretraining examples (training identities, environment set A).

    Columns: ``images`` (the query last), ``question``, ``answer``, ``task``, ``tags``.
    """
    features = Features(
        {
            "images": List(ImageFeature()),
            "question": Value("string"),
            "answer": Value("string"),
            "task": Value("string"),
            "tags": List(Value("string")),
        }
    )
    world_tasks = WorldTasks(world)
    rng = np.random.default_rng([world.seed, 4, seed])
    rows = []
    for index in range(num_examples):
        example = world_tasks.sample(rng, tasks[index % len(tasks)])
        rows.append(
            {
                "images": [Image.fromarray(image) for image in example.images],
                "question": example.question,
                "answer": example.answer,
                "task": example.task,
                "tags": example.tags,
            }
        )
    return Dataset.from_list(rows, features=features)


# ---------------------------------------------------------------------------------------------
# ICPT episodes
# ---------------------------------------------------------------------------------------------
def _join_names(names: Sequence[str]) -> str:
    return ", ".join(names)


def _mask_image(mask: np.ndarray) -> Image.Image:
    return Image.fromarray(mask.astype(np.uint8) * 255, "L")


class _EpisodeBuilder:
    """Builds one ICPT episode at a time for one identity split."""

    def __init__(self, world: World, split: str, max_references: int):
        self.world = world
        self.split = split
        self.identity_ids = world.split(split)
        self.twins = [i for i in self.identity_ids if i in world.look_alike_of]
        self.reference_environments = world.environment_set("A")
        # Held-out queries come from set A or B; training never sees set B.
        self.query_environments = world.environment_set("A") + (
            world.environment_set("B") if split == "held_out" else []
        )
        self.max_references = max_references

    def _others(self, exclude: set[int], count: int, rng: np.random.Generator) -> list[int]:
        pool = [i for i in self.identity_ids if i not in exclude]
        return [int(i) for i in rng.choice(pool, size=count, replace=False)]

    def episode(self, task: str, rng: np.random.Generator) -> dict:
        world = self.world
        num_concepts = (
            int(rng.choice([2, 3, 4], p=[0.5, 0.3, 0.2]))
            if task == "presence"
            else int(rng.choice([1, 2, 3, 4], p=[0.4, 0.3, 0.2, 0.1]))
        )
        look_alike = bool(rng.random() < 0.3) and task != "caption"
        first = int(rng.choice(self.twins)) if look_alike else int(rng.choice(self.identity_ids))
        twin = world.look_alike_of.get(first)
        exclude = {first} | ({twin} if twin is not None else set())
        concept_ids = [first] + self._others(exclude, num_concepts - 1, rng)
        names = concept_labels(rng, num_concepts)
        name_of = dict(zip(concept_ids, names))
        target, target_name = first, names[0]
        # Distractor identities are never a concept nor a concept's twin (twins enter on purpose).
        taken = set(concept_ids) | {world.look_alike_of[i] for i in concept_ids if i in world.look_alike_of}

        concepts, environments = [], []
        for identity_id, name in zip(concept_ids, names):
            references, masks = [], []
            for _ in range(int(rng.integers(1, self.max_references + 1))):
                environment = self.reference_environments[int(rng.integers(len(self.reference_environments)))]
                image, scene_masks = world.render([identity_id], environment, rng)
                references.append(image)
                masks.append(_mask_image(scene_masks[identity_id]))
                environments.append(environment.name)
            concepts.append({"name": name, "references": references, "masks": masks,
                             "description": world.identities[identity_id].description})
        order = rng.permutation(num_concepts)  # the target is not always listed first
        concepts = [concepts[i] for i in order]

        question, answer, options, scene, tags = self._task(
            task, rng, target, target_name, twin, look_alike, concept_ids, names, name_of, taken
        )
        row = {
            "concepts": concepts,
            "question": question,
            "answer": answer,
            "task": task,
            "options": options,
            "tags": tags,
            # what the images show, for split checks (not episode columns)
            "identity_ids": list(concept_ids),
            "environments": environments,
        }
        if scene is None:  # text-only
            row.update(image=None, target=target_name, present=[])
            return row
        environment = self.query_environments[int(rng.integers(len(self.query_environments)))]
        image, masks = world.render(scene, environment, rng)
        present = [name_of[i] for i in concept_ids if i in scene]
        if environment.set == "B":
            tags.append("environment_shift")
        if len(present) > 1:
            tags.append("multi_concept")
        if callable(answer):  # answers that depend on where the objects landed
            row["answer"] = answer(masks)
        row.update(image=image, target="" if task in ("presence", "caption") else target_name, present=present)
        row["identity_ids"] += [i for i in scene if i not in concept_ids]
        row["environments"].append(environment.name)
        return row

    def _task(self, task, rng, target, target_name, twin, look_alike, concept_ids, names, name_of, taken):
        world = self.world
        identity = world.identities[target]
        tags = ["look_alike"] if look_alike else []
        extras = lambda count: self._others(taken, count, rng)  # noqa: E731
        if task == "recognition":
            positive = bool(rng.random() < 0.5)
            others = [i for i in concept_ids[1:] if rng.random() < 0.3] + extras(int(rng.choice(3, p=[0.6, 0.3, 0.1])))
            scene = ([target] if positive else []) + ([twin] if look_alike and not positive else []) + others
            scene = [scene[i] for i in rng.permutation(len(scene))][:4]
            if positive and target not in scene:
                scene[0] = target
            return RECOGNITION_QUESTION.format(name=target_name), "Yes" if target in scene else "No", [], scene, tags
        if task == "presence":
            scene = [i for i in concept_ids if rng.random() < 0.5]
            if look_alike and target not in scene:
                scene.append(twin)
            scene += extras(int(rng.choice(2, p=[0.7, 0.3])))
            scene = [scene[i] for i in rng.permutation(len(scene))][:4]
            present = [name_of[i] for i in concept_ids if i in scene]
            if look_alike and twin not in scene:
                tags = []
            return PRESENCE_QUESTION.format(names=_join_names(names)), _join_names(present) or "none", [], scene, tags
        if task == "attribute":
            if look_alike:
                # Ask about the very detail that tells the target from its twin, with the twin in view.
                attribute = next(a for a in ATTRIBUTES if getattr(identity, a) != getattr(world.identities[twin], a))
                scene = [target, twin]
            else:
                attribute = str(rng.choice(ATTRIBUTES))
                scene = (
                    [target]
                    + [i for i in concept_ids[1:] if rng.random() < 0.3][:1]
                    + extras(int(rng.choice(2, p=[0.6, 0.4])))
                )
            scene = [scene[i] for i in rng.permutation(len(scene))]
            return (
                ATTRIBUTE_QUESTIONS[attribute].format(name=target_name),
                attribute_answer(identity, attribute),
                [],
                scene,
                tags,
            )
        if task == "text_qa":
            attribute, wrong = self._wrong_option(identity, twin if look_alike else None, rng)
            options = [attribute_answer(identity, attribute), wrong]
            options = [options[i] for i in rng.permutation(2)]
            question = TEXT_QA_QUESTIONS[attribute].format(name=target_name, first=options[0], second=options[1])
            return question, attribute_answer(identity, attribute), options, None, tags
        if task == "vqa":
            other = (
                twin
                if look_alike
                else (concept_ids[1] if len(concept_ids) > 1 and rng.random() < 0.5 else extras(1)[0])
            )
            scene = [target, other] if rng.random() < 0.5 else [other, target]
            if rng.random() < 0.5 or look_alike or world.identities[other].shape == identity.shape:

                def side(masks):
                    return "on the left" if _centre_x(masks[target]) < _centre_x(masks[other]) else "on the right"

                return (
                    VQA_POSITION_QUESTION.format(name=target_name),
                    side,
                    ["on the left", "on the right"],
                    scene,
                    tags,
                )
            options = [attribute_answer(world.identities[other], "shape"), attribute_answer(identity, "shape")]
            correct = options[0]
            options = [options[i] for i in rng.permutation(2)]
            question = VQA_NEIGHBOUR_QUESTION.format(name=target_name, first=options[0], second=options[1])
            return question, correct, options, scene, tags
        if task == "caption":
            # Each concept named in the question is in the photo half the time, so a caption that names them all
            # (or none) without looking is right on half of them (the name accuracy's guessing floor).
            scene = [i for i in concept_ids if rng.random() < 0.5]
            scene += extras(int(rng.choice(2, p=[0.6, 0.4])) if scene else 1)
            scene = [scene[i] for i in rng.permutation(len(scene))][:4]
            return (
                CAPTION_QUESTION.format(names=_join_names(names)),
                lambda masks: self._caption(scene, masks, name_of),
                [],
                scene,
                tags,
            )
        raise ValueError(f"Unknown task {task!r}; expected one of {TASKS}.")

    def _wrong_option(self, identity: Identity, twin: int | None, rng: np.random.Generator) -> tuple[str, str]:
        """An attribute and a wrong answer for it: the twin's value when there is a twin."""
        if twin is not None:
            other = self.world.identities[twin]
            attribute = next(a for a in ATTRIBUTES if getattr(identity, a) != getattr(other, a))
            return attribute, attribute_answer(other, attribute)
        attribute = str(rng.choice(ATTRIBUTES))
        values = ATTRIBUTE_VALUES[attribute]
        value = str(rng.choice([v for v in values if v != getattr(identity, attribute)]))
        return attribute, attribute_answer(dataclasses.replace(identity, **{attribute: value}), attribute)

    def _caption(self, scene: list[int], masks: dict, name_of: dict) -> str:
        ordered = sorted(scene, key=lambda i: _centre_x(masks[i]))
        parts = [name_of.get(i, self.world.identities[i].description) for i in ordered]
        if len(parts) == 1:
            return f"a photo of {parts[0]}."
        return f"a photo of {', '.join(parts[:-1])} and {parts[-1]}, from left to right."


def iter_episodes(
    world: World, split: str, num_episodes: int, seed: int = 0, tasks: Sequence[str] = TASKS, max_references: int = 5
) -> Iterator[dict]:
    """Yield ICPT episode rows (`EPISODE_FEATURES` columns, PIL images), cycling through ``tasks``.

    ``split="train"``: training identities, environment set A only. ``split="held_out"``: held-out
    identities, references from set A, queries from set A or B.
    """
    unknown = set(tasks) - set(TASKS)
    if unknown:
        raise ValueError(f"Unknown tasks {sorted(unknown)}; expected some of {TASKS}.")
    builder = _EpisodeBuilder(world, split, max_references)
    rng = np.random.default_rng([world.seed, 5, seed, 0 if split == "train" else 1])
    for index in range(num_episodes):
        row = builder.episode(tasks[index % len(tasks)], rng)
        yield {column: row[column] for column in EPISODE_FEATURES}


def build_episodes(
    world: World, split: str, num_episodes: int, seed: int = 0, tasks: Sequence[str] = TASKS, max_references: int = 5
):
    """A `datasets.Dataset` of ICPT episodes with exactly `icpt.episodes.EPISODE_FEATURES`.

    Rendering costs about 1-2 ms per image (about 10 images per episode); build once and
    ``save_to_disk`` for repeated use.

    Example:

    ```python
    >>> from icpt.world.world import World
    >>> train = build_episodes(World(num_identities=60), "train", num_episodes=12)
    >>> train.features == EPISODE_FEATURES
    True
    ```
    """
    rows = list(iter_episodes(world, split, num_episodes, seed, tasks, max_references))
    return Dataset.from_list(rows, features=EPISODE_FEATURES)


GENERIC_TASKS = ("describe_object", "describe_scene")


def generic_episodes(world: World, split: str, num_episodes: int, seed: int = 0):
    """A `datasets.Dataset` of episodes without concepts (task "generic", `EPISODE_FEATURES` columns).

    The backbone's own pretraining questions ("Describe the object.", "Describe the scene."), alternating,
    about ``split``'s identities in environment set A: what a reader adapter must leave intact (the harness
    scores them with word F1; the reader's training mixes them in). The draw is `pretraining_dataset`'s for
    the same world, seed and tasks.

    Example:

    ```python
    >>> from icpt.world.world import World
    >>> episodes = generic_episodes(World(num_identities=60), "held_out", num_episodes=2)
    >>> list(episodes["task"]), list(episodes["concepts"])
    (['generic', 'generic'], [[], []])
    ```
    """
    world_tasks = WorldTasks(world, split)
    rng = np.random.default_rng([world.seed, 4, seed])
    rows = []
    for index in range(num_episodes):
        example = world_tasks.sample(rng, GENERIC_TASKS[index % len(GENERIC_TASKS)])
        rows.append({"concepts": [], "image": Image.fromarray(np.asarray(example.images[-1])),
                     "question": example.question, "answer": example.answer, "task": "generic", "target": "",
                     "options": [], "present": [], "tags": []})
    return Dataset.from_list(rows, features=EPISODE_FEATURES)
