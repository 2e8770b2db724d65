"""The methods the evaluation harness compares, each answering episodes on the same frozen backbone.

- `ICPTMethod`: a trained projector (`icpt` and its ablations `icpt_fixed_length`, `icpt_with_decoupling`,
  `icpt_with_separation`, `icpt_no_identity_targets`, ...): each concept is encoded once into a `ConceptBank`, the question is asked with it.
- `ICPTRetrievalMethod` (`icpt_retrieval`): `icpt`, plus the concepts retrieval finds in the photo among all
  the evaluation's concepts (RAP's flow).
- `NameOnlyMethod` (`name_only`): the plain backbone; the label appears in the question only.
- `TextDescriptionMethod` (`text_description`): the plain backbone with "<bo> is <description>." before
  the question.
- `RawReferencesMethod` (`raw_references`): the plain backbone with "<bo> is <photo><photo>." before the
  question -- the reference photos themselves in context: the ceiling, and the token cost ICPT avoids.
  With `plain_noun=True` (`raw_references_plain_noun`) the label is replaced by "the object" in the
  preamble and the question: the exact layout the embedded default backbone was pretrained on
  (`icpt.world.tasks.WorldTasks.named_question`), an oracle ceiling for questions that name one concept.
- `TestTimeTrainingMethod` (`test_time_training`): Yo'LLaVA-style soft tokens, 16 rows per concept trained
  by `icpt.training.prompt_fitting.train_concept_prompts` with the backbone frozen, then injected like ICPT's rows.

Every method asks as a user does: a question's prompt holds only the concepts the question names (the
rule `ICPTProcessor` applies to a `ConceptBank`), so every method answers the same question under the same
rule. Every method counts the prompt tokens it spends per concept and the seconds it takes to add a concept.
Episodes reach the methods as `EvalEpisode`s, which decode images only when a method needs them.

Example:

```python
>>> from icpt.evaluation.methods import ICPTMethod, eval_episodes
>>> method = ICPTMethod(context, model)  # doctest: +SKIP
>>> [method.answer(episode) for episode in eval_episodes(dataset)]  # doctest: +SKIP
```
"""

from __future__ import annotations

import dataclasses
import hashlib
import time

import numpy as np
import torch
from datasets import Image as ImageFeature

from icpt.inference import option_log_likelihoods
from icpt.training.prompt_fitting import (
    TEST_TIME_TRAINING_LEARNING_RATE,
    TEST_TIME_TRAINING_ROWS,
    TEST_TIME_TRAINING_STEPS,
    train_concept_prompts,
)
from icpt.training.trainer import episode_messages
from icpt.world.tasks import GENERIC_NAME
from modeling_icpt import ConceptBank
from processing_icpt import load_image
from processing_icpt.input_checks import LABEL_PATTERN

# Most new tokens generated per task: enough for each task's longest expected answer.
DEFAULT_MAX_NEW_TOKENS = {
    "recognition": 4,
    "vqa": 12,
    "text_qa": 12,
    "attribute": 12,
    "presence": 24,
    "caption": 48,
    "generic": 64,
}


# --------------------------------------------------------------------------------------------- episodes


def image_key(value: dict) -> str:
    """A short identifier of an undecoded image (`{"path", "bytes"}`): its path, else a hash of its bytes."""
    if value.get("bytes"):
        return hashlib.sha1(value["bytes"]).hexdigest()[:16]
    if value.get("path"):
        return str(value["path"])
    raise ValueError("An episode image has neither bytes nor a path: rebuild the episode dataset.")


_DECODER = ImageFeature()


def decode_image(value: dict):
    """An RGB PIL image from an undecoded `datasets.Image` value."""
    return load_image(_DECODER.decode_example(value))


@dataclasses.dataclass
class EvalConcept:
    """One concept of an episode, as the harness sees it.

    `key` names the concept *and* the references used for it (two episodes that share a concept and
    its references share the key), so a concept is encoded or trained once per seed, not per episode.
    """

    name: str
    key: str
    reference_values: list  # undecoded images ({"path", "bytes"})
    description: str | None

    @property
    def num_references(self) -> int:
        return len(self.reference_values)


@dataclasses.dataclass
class EvalEpisode:
    """One episode with its images undecoded (`decode_image` opens them when a method needs them)."""

    concepts: list[EvalConcept]
    image_value: dict | None
    question: str
    answer: str
    task: str
    target: str
    options: list[str]
    present: list[str]
    tags: list[str]

    def as_row(self) -> dict:
        """The columns `episode_messages` reads."""
        return {"image": self.image_value, "question": self.question, "answer": self.answer}

    @property
    def named_concepts(self) -> list[EvalConcept]:
        """The episode's concepts that the question names: the only ones that enter its prompt.

        A label is named when it occurs as a whole `<label>` token in the question, the rule `ICPTProcessor`
        applies to a `ConceptBank` ("Is <bo> in this photo?" gets <bo>'s preamble, not <mia>'s).
        """
        named = set(LABEL_PATTERN.findall(self.question))
        return [concept for concept in self.concepts if concept.name in named]


def distinct_concepts(episodes: list[EvalEpisode]) -> list[EvalConcept]:
    """Every distinct concept (by key) of the episodes, in order of first appearance."""
    pool = {}
    for episode in episodes:
        for concept in episode.concepts:
            pool.setdefault(concept.key, concept)
    return list(pool.values())


def subsample_references(values: list, num_references: int | None, seed: int, concept_key: str) -> list:
    """`num_references` of a concept's references, drawn with `seed` (all when None or when it has fewer).

    The draw depends only on the seed and the concept, so a concept that appears in several episodes
    gets the same references in all of them.
    """
    if num_references is None or len(values) <= num_references:
        return list(values)
    digest = int(hashlib.sha1(concept_key.encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng([seed, digest])
    chosen = sorted(rng.choice(len(values), size=num_references, replace=False).tolist())
    return [values[i] for i in chosen]


def eval_episodes(dataset, num_references: int | None = None, seed: int = 0) -> list[EvalEpisode]:
    """The rows of an episode dataset (`EPISODE_FEATURES`) as `EvalEpisode`s, images left undecoded.

    With `num_references`, each concept keeps that many of its references, drawn with `seed`.
    """
    if num_references is not None and num_references < 1:
        raise ValueError(f"num_references must be at least 1 (or None for all references), got {num_references}.")
    # the arrow rows hold images as {"bytes", "path"}: nothing is decoded until a method needs it
    rows = dataset.with_format("arrow")[:].to_pylist() if len(dataset) else []
    episodes = []
    for row in rows:
        concepts = []
        for concept in row["concepts"]:
            full_key = concept["name"] + "|" + ",".join(image_key(v) for v in concept["references"])
            references = subsample_references(concept["references"], num_references, seed, full_key)
            key = concept["name"] + "|" + ",".join(image_key(v) for v in references)
            concepts.append(EvalConcept(concept["name"], key, references, concept.get("description")))
        episodes.append(
            EvalEpisode(
                concepts=concepts,
                image_value=row["image"],
                question=row["question"],
                answer=row["answer"],
                task=row["task"],
                target=row["target"] or "",
                options=list(row["options"] or []),
                present=list(row["present"] or []),
                tags=list(row["tags"] or []),
            )
        )
    return episodes


# --------------------------------------------------------------------------------------------- methods


class Method:
    """A way of answering episodes. Subclasses fill `add_concept` (and its cost) and `answer`.

    Per seed (`begin_seed`), each distinct concept is added once: `prompt_tokens[key]` is what the
    method puts in the context for it, `seconds[key]` what adding it cost.
    """

    name = "method"

    def __init__(self, context: BackboneContext):
        self.context = context
        self.begin_seed(0)

    def begin_seed(self, seed: int) -> None:
        self.seed = seed
        self.prompt_tokens: dict[str, int] = {}
        self.seconds: dict[str, float] = {}
        self._added: dict[str, object] = {}

    def concept(self, concept: EvalConcept):
        """What `add_concept` made of this concept, made on first use."""
        if concept.key not in self._added:
            self.context.references(concept)  # decoding the photos is data loading, not the cost of adding
            start = time.perf_counter()
            self._added[concept.key], tokens = self.add_concept(concept)
            self.seconds[concept.key] = time.perf_counter() - start
            self.prompt_tokens[concept.key] = tokens
        return self._added[concept.key]

    def add_concept(self, concept: EvalConcept) -> tuple[object, int]:
        """Whatever the method keeps for a concept, and the prompt tokens it spends on it."""
        raise NotImplementedError

    def question_tokens(self, episode: EvalEpisode) -> int:
        """The prompt tokens this method put in context for the concepts of one question (after `answer`)."""
        return sum(self.prompt_tokens[concept.key] for concept in episode.named_concepts)

    def answer(self, episode: EvalEpisode) -> str:
        raise NotImplementedError


class BackboneContext:
    """The frozen backbone shared by every method of a run, with its ICPT processor.

    Args:
        vlm: the plain backbone (`AutoModelForImageTextToText`).
        processor: an `ICPTProcessor` for that backbone (its `backbone_processor` serves the baselines).
        injector: an `ICPTForConditionalGeneration` around `vlm`; it puts test-time-trained rows in their slots.
        max_new_tokens: most new tokens per task (defaults: `DEFAULT_MAX_NEW_TOKENS`).
    """

    def __init__(self, vlm, processor, injector, max_new_tokens: dict | None = None):
        self.vlm = vlm
        self.processor = processor
        self.injector = injector
        self.max_new_tokens = {**DEFAULT_MAX_NEW_TOKENS, **(max_new_tokens or {})}
        self._decoded: dict[str, object] = {}

    @property
    def device(self):
        return self.vlm.get_input_embeddings().weight.device

    def image(self, value: dict):
        """An undecoded image, decoded (once per run)."""
        key = image_key(value)
        if key not in self._decoded:
            self._decoded[key] = decode_image(value)
        return self._decoded[key]

    def references(self, concept: EvalConcept) -> list:
        """The concept's decoded reference images."""
        return [self.image(value) for value in concept.reference_values]

    def text_tokens(self, text: str) -> int:
        return len(self.processor.tokenizer(text, add_special_tokens=False)["input_ids"])

    def image_tokens(self, images: list) -> int:
        """Tokens that `images` take in the backbone's sequence (with the family's image markup)."""
        with_images = [{"role": "user", "content": [{"type": "image"} for _ in images] + [{"type": "text", "text": "."}]}]
        without = [{"role": "user", "content": [{"type": "text", "text": "."}]}]
        return int(self.backbone_inputs(with_images, images)["input_ids"].shape[1]
                   - self.backbone_inputs(without, [])["input_ids"].shape[1])

    def new_tokens(self, episode: EvalEpisode) -> int:
        return self.max_new_tokens.get(episode.task, max(self.max_new_tokens.values()))

    def decode(self, output, prompt_length: int) -> str:
        return self.processor.decode(output[0, prompt_length:], skip_special_tokens=True).strip()

    def backbone_inputs(self, messages: list, images: list):
        """The plain backbone's inputs for one conversation, formatted by its chat template."""
        processor = self.processor
        text = processor.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, chat_template=processor.chat_template
        )
        inputs = processor.backbone_processor(
            text=[text], images=[images] if images else None, return_tensors="pt", padding=True
        )
        return inputs.to(self.device)

    @torch.no_grad()
    def respond(self, model, inputs, episode: EvalEpisode, **model_kwargs) -> str:
        """The answer to one prepared question: with options, the option the model finds most likely (the answer
        ranking of SEED-Bench: a backbone that never learned to answer "A or B?" in words still shows whether its
        prompt carries what tells them apart); otherwise its greedy generation."""
        if episode.options:
            scores = option_log_likelihoods(model, self.processor.tokenizer, inputs, episode.options, **model_kwargs)
            return episode.options[int(scores.argmax())]
        output = model.generate(**inputs, **model_kwargs, max_new_tokens=self.new_tokens(episode), do_sample=False)
        return self.decode(output, inputs["input_ids"].shape[1])

    def answer_with_backbone(self, messages: list, images: list, episode: EvalEpisode) -> str:
        return self.respond(self.vlm, self.backbone_inputs(messages, images), episode)

    def answer_with_bank(self, model, bank: ConceptBank | None, episode: EvalEpisode) -> str:
        images = [[decode_image(episode.image_value)]] if episode.image_value is not None else None
        inputs = self.processor(
            messages=[episode_messages(episode.as_row(), with_answer=False)], images=images, concepts=bank
        ).to(self.device)
        return self.respond(model, inputs, episode, concepts=bank)


def _merge(banks: list[ConceptBank]) -> ConceptBank | None:
    if not banks:  # a question that names no concept is asked as it is
        return None
    merged = banks[0]
    for bank in banks[1:]:
        merged = merged.merge(bank)
    return merged


class ICPTMethod(Method):
    """A trained ICPT projector: one projector forward pass adds a concept; its bank's rows are the prompt."""

    def __init__(self, context: BackboneContext, model, name: str = "icpt"):
        self.model = model
        self.name = name
        super().__init__(context)

    @torch.no_grad()
    def add_concept(self, concept):
        references = self.context.processor.prepare_references({concept.name: self.context.references(concept)})
        bank = self.model.encode_concepts(**references.to(self.context.device))
        return bank, bank.lengths[concept.name]

    def answer(self, episode):
        bank = _merge([self.concept(c) for c in episode.named_concepts])
        return self.context.answer_with_bank(self.model, bank, episode)


class ICPTRetrievalMethod(ICPTMethod):
    """ICPT with retrieval choosing context, as RAP does (`icpt_retrieval`): besides the concepts the question
    names, the prompt holds the `top_k` other concepts of the user's whole collection that the query photo most
    likely shows (`model.retrieve_concepts`). The collection holds each identity of the evaluation data once
    (`set_concept_pool`; an identity is a concept's description where it has one, else its references), and the
    named concepts' own identities are never retrieved a second time.

    Its difference to `icpt` is what retrieved context adds to (or costs) the answers; `retrieval_hits` records,
    for each named concept present in a photo, whether retrieval ranked its identity among the first
    `top_k + named` (retrieval's recall in the harness's own scenes). Questions without a photo are asked as
    `icpt` asks them.
    """

    def __init__(self, context: BackboneContext, model, top_k: int = 2, name: str = "icpt_retrieval"):
        self.top_k = top_k
        self.concept_pool: list[EvalConcept] = []
        super().__init__(context, model, name=name)

    def begin_seed(self, seed: int) -> None:
        super().begin_seed(seed)
        self._pool_bank: ConceptBank | None = None
        self._pool_keys: list[str] = []
        self._tokens: dict[int, int] = {}
        self.retrieval_hits: list[bool] = []

    def set_concept_pool(self, episodes: list[EvalEpisode]) -> None:
        """The collection retrieval searches: each identity of the evaluation data once."""
        pool = {}
        for concept in distinct_concepts(episodes):
            pool.setdefault(self._identity(concept), concept)
        self.concept_pool = list(pool.values())
        self._pool_bank = None

    @staticmethod
    def _identity(concept: EvalConcept) -> str:
        # episodes render each concept's references afresh: its description names the identity behind them
        return concept.description or concept.key

    def _pool(self) -> ConceptBank | None:
        """The collection as one bank, encoded once per seed (labels `<r0>`, ... since episodes reuse label names)."""
        if self._pool_bank is None and self.concept_pool:
            processor, device = self.context.processor, self.context.device
            references = {f"<r{i}>": self.context.references(c) for i, c in enumerate(self.concept_pool)}
            self._pool_bank = ConceptBank.encode(self.model, processor, references, batch_size=32)
            self._pool_keys = [self._identity(c) for c in self.concept_pool]
        return self._pool_bank

    @torch.no_grad()
    def answer(self, episode):
        named = episode.named_concepts
        pool = self._pool()
        if episode.image_value is None or pool is None:
            self._tokens.pop(id(episode), None)
            return super().answer(episode)
        image = decode_image(episode.image_value)
        processor, device = self.context.processor, self.context.device
        ranked = self.model.retrieve_concepts(pool, top_k=self.top_k + len(named),
                                              **processor.prepare_retrieval([image]).to(device))[0]
        named_keys, named_labels = {self._identity(c) for c in named}, {c.name for c in named}
        ranked_keys = [self._pool_keys[pool.index(label)] for label in ranked]
        self.retrieval_hits += [self._identity(c) in ranked_keys for c in named if c.name in episode.present]
        retrieved = [label for label, key in zip(ranked, ranked_keys)
                     if key not in named_keys and label not in named_labels][: self.top_k]
        banks = [self.concept(c) for c in named]
        bank = _merge(banks + [pool.select(retrieved)]) if retrieved else _merge(banks)
        inputs = processor(messages=[episode_messages(episode.as_row(), with_answer=False)], images=[[image]],
                           concepts=bank, retrieved=[retrieved]).to(device)
        self._tokens[id(episode)] = int((inputs["input_ids"] == processor.prompt_token_id).sum())
        return self.context.respond(self.model, inputs, episode, concepts=bank)

    def question_tokens(self, episode: EvalEpisode) -> int:
        """The prompt rows of the named and the retrieved concepts of this question."""
        return self._tokens.get(id(episode), super().question_tokens(episode))


class NameOnlyMethod(Method):
    """The plain backbone; the label appears in the question only (its prompt cost: the label's tokens)."""

    name = "name_only"

    def add_concept(self, concept):
        return None, self.context.text_tokens(concept.name)

    def answer(self, episode):
        for concept in episode.named_concepts:
            self.concept(concept)
        images = [decode_image(episode.image_value)] if episode.image_value is not None else []
        return self.context.answer_with_backbone(episode_messages(episode.as_row(), with_answer=False), images, episode)


class TextDescriptionMethod(Method):
    """The plain backbone with "<bo> is <description>." per concept before the question."""

    name = "text_description"

    def add_concept(self, concept):
        if not concept.description:
            raise ValueError(
                f"The concept {concept.name} has no description: the text_description baseline needs episodes "
                "whose concepts carry one (the `description` field of EPISODE_FEATURES)."
            )
        description = concept.description.strip().rstrip(".")
        return description, self.context.text_tokens(description)

    def answer(self, episode):
        messages = episode_messages(episode.as_row(), with_answer=False)
        if episode.named_concepts:
            preamble = " ".join(f"{c.name} is {self.concept(c)}." for c in episode.named_concepts) + "\n"
            messages[0]["content"] = [{"type": "text", "text": preamble}] + messages[0]["content"]
        images = [decode_image(episode.image_value)] if episode.image_value is not None else []
        return self.context.answer_with_backbone(messages, images, episode)


class RawReferencesMethod(Method):
    """The plain backbone with the reference photos of the concepts a question names in context:
    "<bo> is <photo><photo>." before the question.

    The prompt cost of a concept is the image tokens of its photos (`BackboneContext.image_tokens`).

    With `plain_noun=True` the concept is called "the object" in the preamble and in the question, the
    layout the embedded default backbone was pretrained on (an oracle ceiling: no label to bind). Only
    questions that name exactly one concept can be asked that way; others are answered with labels.
    """

    def __init__(self, context: BackboneContext, plain_noun: bool = False):
        self.plain_noun = plain_noun
        self.name = "raw_references_plain_noun" if plain_noun else "raw_references"
        super().__init__(context)

    def add_concept(self, concept):
        images = self.context.references(concept)
        return images, self.context.image_tokens(images)

    def answer(self, episode):
        named = episode.named_concepts
        question = episode.question
        plain = self.plain_noun and len(named) == 1
        if plain:
            question = question.replace(named[0].name, GENERIC_NAME)
        parts, images = [], []
        for index, concept in enumerate(named):
            references = self.concept(concept)
            parts.append({"type": "text", "text": f"{GENERIC_NAME if plain else concept.name} is"})
            parts.extend({"type": "image"} for _ in references)
            parts.append({"type": "text", "text": ".\n" if index == len(named) - 1 else "."})
            images.extend(references)
        messages = episode_messages({**episode.as_row(), "question": question}, with_answer=False)
        messages[0]["content"] = parts + messages[0]["content"]
        if episode.image_value is not None:
            images.append(decode_image(episode.image_value))
        return self.context.answer_with_backbone(messages, images, episode)


class TestTimeTrainingMethod(Method):
    """Yo'LLaVA-style test-time training: per concept, 16 rows trained on its photos (see `train_concept_prompts`).

    Negatives are reference photos of other concepts of the same evaluation data (`negative_pool`),
    drawn with the seed; the seed also fixes each concept's initialization.
    """

    name = "test_time_training"
    __test__ = False  # not a pytest test class despite its name

    def __init__(self, context, steps: int = TEST_TIME_TRAINING_STEPS,
                 learning_rate: float = TEST_TIME_TRAINING_LEARNING_RATE, num_negatives: int = 8,
                 num_rows: int = TEST_TIME_TRAINING_ROWS):
        self.steps, self.learning_rate = steps, learning_rate
        self.num_negatives, self.num_rows = num_negatives, num_rows
        self.negative_pool: list[EvalConcept] = []
        self.losses: dict[str, list[float]] = {}
        super().__init__(context)

    def set_negative_pool(self, episodes: list[EvalEpisode]) -> None:
        """The concepts whose photos serve as negatives (every distinct concept of the evaluation data)."""
        self.negative_pool = distinct_concepts(episodes)

    def _negatives(self, concept: EvalConcept) -> list:
        others = [c for c in self.negative_pool if c.key != concept.key and c.name != concept.name]
        if not others:
            return []
        digest = int(hashlib.sha1(concept.key.encode()).hexdigest()[:8], 16)
        rng = np.random.default_rng([self.seed, digest, 1])
        picks = rng.choice(len(others), size=min(self.num_negatives, len(others)), replace=False)
        negatives = []
        for index in picks.tolist():
            other = others[index]
            negatives.append(self.context.image(other.reference_values[int(rng.integers(other.num_references))]))
        return negatives

    def add_concept(self, concept):
        digest = int(hashlib.sha1(concept.key.encode()).hexdigest()[:8], 16)
        bank, losses = train_concept_prompts(
            self.context.injector, self.context.processor, concept.name, self.context.references(concept),
            self._negatives(concept), num_rows=self.num_rows, steps=self.steps,
            learning_rate=self.learning_rate, seed=(self.seed * 1_000_003 + digest) % 2**63,
        )
        self.losses[concept.key] = losses
        return bank, self.num_rows

    def answer(self, episode):
        bank = _merge([self.concept(c) for c in episode.named_concepts])
        return self.context.answer_with_bank(self.context.injector, bank, episode)
