"""Training batches: the token ids and pixels of world examples (a fast path equal to what the saved processor produces;
a test checks it), and one random stream per (stage, step), built in this process or in forked worker processes, so
that the batches are the same with any number of workers and after a resume."""

from __future__ import annotations

import collections
import multiprocessing

import numpy as np
import torch

from icpt.world.tasks import WorldTasks
from icpt.world.world import ATTRIBUTE_VALUES, RenderBank, World

from .modeling import END_TOKEN, IMAGE_MEAN, IMAGE_STD, IMAGE_TOKEN


def format_prompt(num_images: int, question: str) -> str:
    """The chat-template text of a user turn with images then a question, ready for generation.

    A question that holds its own ``<image>`` placeholders (a named question) places all its images."""
    leading = 0 if IMAGE_TOKEN in question else num_images
    return "<|user|>" + " <image>" * leading + f" {question} <|end|>\n<|assistant|>"


def pixel_values(images: list[np.ndarray]) -> torch.Tensor:
    """uint8 (H, W, 3) images -> normalized (N, 3, H, W), as the CLIP image processor does."""
    return normalize_pixels(torch.from_numpy(np.stack(images)))


def normalize_pixels(images: torch.Tensor) -> torch.Tensor:
    """A uint8 (N, H, W, 3) tensor -> normalized float (N, 3, H, W), on the tensor's device."""
    array = images.permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(IMAGE_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD, device=images.device).view(1, 3, 1, 1)
    return (array - mean) / std


class TextEncoder:
    """Token ids of prompts and answers, with `<image>` expanded to the model's image tokens."""

    def __init__(self, tokenizer, num_image_tokens: int):
        self.tokenizer = tokenizer
        self.num_image_tokens = num_image_tokens
        self.pad_id = tokenizer.pad_token_id
        self._cache: dict[str, list[int]] = {}

    def _ids(self, text: str) -> list[int]:
        if text not in self._cache:
            self._cache[text] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self._cache[text]

    def prompt_ids(self, num_images: int, question: str) -> list[int]:
        text = format_prompt(num_images, question).replace(IMAGE_TOKEN, IMAGE_TOKEN * self.num_image_tokens)
        return self._ids(text)

    def answer_ids(self, answer: str) -> list[int]:
        return self._ids(f" {answer} {END_TOKEN}")

    def batch(self, examples, with_answers: bool = True) -> dict[str, torch.Tensor]:
        """Right-padded input_ids, attention_mask, labels (answer tokens only) and pixel_values (absent when
        no example has an image)."""
        rows, labels = [], []
        for example in examples:
            prompt = self.prompt_ids(len(example.images), example.question)
            answer = self.answer_ids(example.answer) if with_answers else []
            rows.append(prompt + answer)
            labels.append([-100] * len(prompt) + answer)
        length = max(len(row) for row in rows)
        input_ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        label_ids = torch.full((len(rows), length), -100, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
        for index, (row, label) in enumerate(zip(rows, labels)):
            input_ids[index, : len(row)] = torch.tensor(row)
            label_ids[index, : len(row)] = torch.tensor(label)
            attention_mask[index, : len(row)] = 1
        images = [image for example in examples for image in example.images]
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if images:
            batch["pixel_values"] = pixel_values(images)
        if with_answers:
            batch["labels"] = label_ids
        return batch


def contrastive_batch(
    world: World, bank: RenderBank, rng: np.random.Generator, args
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """``args.contrastive_identities`` random identities plus ``args.contrastive_pairs`` look-alike
    pairs, ``args.views`` renders each (renders of one identity come from different environments).
    The images stay uint8 (N, H, W, 3), a quarter of the bytes to move from a worker and to the device."""
    row_of = {int(i): row for row, i in enumerate(bank.identity_ids)}
    pairs = [pair for pair in world.look_alike_pairs if pair[0] in row_of]
    chosen = [pairs[i] for i in rng.choice(len(pairs), size=args.contrastive_pairs, replace=False)]
    identities = [i for pair in chosen for i in pair]
    others = [i for i in row_of if i not in set(identities)]
    identities += [int(i) for i in rng.choice(others, size=args.contrastive_identities, replace=False)]
    images, classes, attributes = [], [], {name: [] for name in ATTRIBUTE_VALUES}
    for cls, identity_id in enumerate(identities):
        columns = rng.choice(bank.images.shape[1], size=args.views, replace=False)
        images.extend(bank.images[row_of[identity_id], column] for column in columns)
        classes.extend([cls] * args.views)
        for name, values in ATTRIBUTE_VALUES.items():
            attributes[name].extend([values.index(getattr(world.identities[identity_id], name))] * args.views)
    return (
        torch.from_numpy(np.stack(images)),
        torch.tensor(classes),
        {name: torch.tensor(labels) for name, labels in attributes.items()},
    )


STAGES = ("contrastive", "comparison", "questions", "formats")


def to_device(batch: dict[str, torch.Tensor], device) -> dict[str, torch.Tensor]:
    return {key: value.to(device) for key, value in batch.items()}


class TrainingBatches:
    """The training batch of a (stage, step, task kind) job, drawn from that step's own random
    stream: the same batches whether built in this process or by workers, and after a resume."""

    def __init__(self, world: World, bank: RenderBank, tasks: WorldTasks, encoder: TextEncoder, args):
        self.world, self.bank, self.tasks, self.encoder, self.args = world, bank, tasks, encoder, args

    def __call__(self, job: tuple[str, int, str]):
        stage, step, kind = job
        rng = np.random.default_rng([self.args.seed, 100, STAGES.index(stage), step])
        if stage == "contrastive":
            return contrastive_batch(self.world, self.bank, rng, self.args)
        if kind == "describe":
            examples = [
                self.tasks.describe_object(rng) if rng.random() < 0.7 else self.tasks.describe_scene(rng)
                for _ in range(self.args.batch_size)
            ]
        else:
            # text-only copying costs a fraction of an image example: twice as many per step
            count = 2 * self.args.batch_size if kind == "label_copy" else self.args.batch_size
            if kind == "labelled_question":  # the task drawn from the same stream as `labelled_question` draws it
                tasks = self.args.format_tasks
                examples = [self.tasks.labelled_question(rng, tasks[int(rng.integers(len(tasks)))]) for _ in range(count)]
            else:
                examples = [self.tasks.sample(rng, kind) for _ in range(count)]
        return self.encoder.batch(examples)


_WORKER_BATCHES: TrainingBatches | None = None


def _start_worker(batches: TrainingBatches) -> None:
    global _WORKER_BATCHES
    _WORKER_BATCHES = batches  # inherited through fork, never pickled
    torch.set_num_threads(1)


def _build_in_worker(job):
    return _WORKER_BATCHES(job)


def batch_stream(batches: TrainingBatches, jobs, pool, ahead: int):
    """``(job, batch)`` for ``jobs`` in order; with a worker ``pool``, up to ``ahead`` batches are built
    in advance (a bound, so that workers never run far ahead of the accelerator and fill memory)."""
    if pool is None:
        for job in jobs:
            yield job, batches(job)
        return
    pending = collections.deque()
    for job in jobs:
        pending.append((job, pool.apply_async(_build_in_worker, (job,))))
        if len(pending) >= ahead:
            job, result = pending.popleft()
            yield job, result.get()
    while pending:
        job, result = pending.popleft()
        yield job, result.get()


def prerender_bank(world: World, identity_ids: list[int], renders_per_identity: int, seed: int, workers: int):
    """`World.prerender` of the training identities in environment set A, split over ``workers``
    processes (each identity has its own random stream, so the bank is the same for any split)."""
    if workers <= 1:
        return world.prerender(identity_ids, renders_per_identity, environment_set="A", seed=seed)
    chunks = [list(chunk) for chunk in np.array_split(np.asarray(identity_ids), workers) if len(chunk)]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        parts = pool.starmap(world.prerender, [(chunk, renders_per_identity, "A", seed) for chunk in chunks])
    return RenderBank(
        np.concatenate([part.identity_ids for part in parts]),
        np.concatenate([part.images for part in parts]),
        np.concatenate([part.environment_index for part in parts]),
    )
