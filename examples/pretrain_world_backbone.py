"""Pretrain ICPT's embedded default backbone: a small LLaVA on the generated world, on a CPU or a GPU.

No pretrained vision encoder exists offline, so ICPT ships its own small vision-language model.
It is a standard transformers `LlavaForConditionalGeneration` (CLIP vision tower + Llama language
model, built from config) with its own WordPiece tokenizer, a CLIP image processor and a
`LlavaProcessor`, so `AutoModelForImageTextToText` / `AutoProcessor` load it offline.

It is trained on *generic* world tasks only -- describing objects and scenes, and comparing images
given in context ("Is the object of the first images also in the last one?") -- on training
identities in environment set A. It never sees ICPT prompts, concept labels, held-out identities or
environment set B. Three stages (see docs/default_model.md for the measurements behind them):

1. **contrastive**: only the vision tower (+ a small head, dropped afterwards) learns
   identity-discriminative features with a supervised-contrastive loss: renders of the same
   identity in different environments are positives, look-alike pairs sit in every batch;
2. **comparison**: the tower is frozen, the connector and the language model learn the
   same/different question (25 % look-alike negatives from the start) and, every third step,
   object and scene descriptions;
3. **questions**: the whole model (the tower at a lower learning rate) learns named questions --
   reference images in a preamble ("the object is <image> <image>."), then a query scene and the
   recognition or attribute question of an ICPT episode about "the object" -- mixed with comparison
   and descriptions. This is the layout in which ICPT later puts a concept's prompt vectors, so the
   language model already reads a preamble as "what the name stands for".

Training is resumable (atomic checkpoints every few minutes, ``--resume``) and keeps to a
``--max-minutes`` budget, so it can run in the background across sittings:

```bash
python examples/pretrain_world_backbone.py --threads 2 --max-minutes 60            # first sitting
python examples/pretrain_world_backbone.py --threads 2 --max-minutes 60 --resume   # later ones
```

``--init-from FOLDER`` starts from a backbone this script exported and trains only stage 3 on it (for
``--question-steps`` more steps, with this run's settings), e.g. to try another look-alike share in
stage 3 without repeating stages 1 and 2; the card counts the source's training time too.

On a GPU (``--device cuda``, the default when one is present) the batches, not the model, are the
bottleneck: ``--workers N`` builds them in N processes. Each batch is drawn from its own random stream
per (stage, step), so the batches are the same with any number of workers and after a resume.
``scripts/pretrain_backbone_gpu.sh`` is the run that trained the shipped backbone (patch 8).

When the comparison stage ends, the model is measured on held-out identities (with the raw
reference images in context) and saved with a model card to ``icpt/default/backbone``.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import math
import multiprocessing
import os
import string
import sys
import time
from pathlib import Path

# Measured here: with other jobs on the same 2 cores, OpenMP's default spin-waiting made 2-thread
# steps 8-10x slower than 1 thread; passive waiting removes that collapse. Set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(REPO_ROOT))

from icpt.world.world import ATTRIBUTE_VALUES, RenderBank, World  # noqa: E402
from icpt.world.tasks import COMPARE_QUESTION, WorldTasks, vocabulary  # noqa: E402

IMAGE_TOKEN = "<image>"
END_TOKEN = "<|end|>"
SPECIAL_TOKENS = ["[PAD]", "[UNK]", IMAGE_TOKEN, "<|system|>", "<|user|>", "<|assistant|>", END_TOKEN]
# "<user>" style roles; images and text in the order given; generation starts after "<|assistant|>".
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>' }}"
    "{% if message['content'] is string %}{{ ' ' + message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}{{ ' <image>' }}"
    "{% elif item['type'] == 'text' %}{{ ' ' + item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ ' <|end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)
# Words, "<label>"-style names kept whole (WordPiece then spells unknown ones out), punctuation.
PRE_TOKENIZER_PATTERN = r"<[^<>\s]+>|\w+|[^\w\s]"
IMAGE_MEAN = IMAGE_STD = [0.5, 0.5, 0.5]


# ---------------------------------------------------------------------------------------------
# Tokenizer, processor, model
# ---------------------------------------------------------------------------------------------
def build_tokenizer():
    """A WordPiece tokenizer: every world word is one token; other words are spelled out.

    WordPiece rather than WordLevel: on world text both give the same tokens, but WordLevel would
    turn every label it has never seen (``<bo>``, ``<w17>``) into the same ``[UNK]``, and ICPT needs
    labels to stay distinguishable.

    Example:

    ```python
    >>> tokenizer = build_tokenizer()
    >>> tokenizer.tokenize("A red circle, <bo>?")
    ['a', 'red', 'circle', ',', '<', '##b', '##o', '##>', '?']
    ```
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pieces = list(dict.fromkeys(vocabulary() + list(string.ascii_lowercase + string.digits + string.punctuation)))
    continuation = ["##" + c for c in string.ascii_lowercase + string.digits + string.punctuation]
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS + pieces + continuation)}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=64))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(PRE_TOKENIZER_PATTERN), behavior="isolated")]
    )
    tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    tokenizer.add_special_tokens(SPECIAL_TOKENS)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="[PAD]",
        unk_token="[UNK]",
        eos_token=END_TOKEN,
        padding_side="right",
        model_input_names=["input_ids", "attention_mask"],
    )


def build_processor(tokenizer, image_size: int = 64, patch_size: int = 16):
    from transformers import CLIPImageProcessor, LlavaProcessor

    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=IMAGE_MEAN,
        image_std=IMAGE_STD,
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        chat_template=CHAT_TEMPLATE,
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=1,  # CLIP's CLS token, dropped by the "default" strategy
    )


def build_model(tokenizer, args):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    vision_config = CLIPVisionConfig(
        hidden_size=args.vision_hidden,
        intermediate_size=4 * args.vision_hidden,
        num_hidden_layers=args.vision_layers,
        num_attention_heads=4,
        image_size=args.image_size,
        patch_size=args.patch_size,
        projection_dim=args.vision_hidden,
    )
    text_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.text_hidden,
        intermediate_size=3 * args.text_hidden,
        num_hidden_layers=args.text_layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=2048,  # 3 concepts x 5 references x 64 image tokens fit
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    num_image_tokens = (args.image_size // args.patch_size) ** 2
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,  # the layer the contrastive stage shapes
        image_seq_length=num_image_tokens,
        tie_word_embeddings=True,
    )
    torch.manual_seed(args.seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


# ---------------------------------------------------------------------------------------------
# Batches (a fast path equal to what the saved processor produces; a test checks it)
# ---------------------------------------------------------------------------------------------
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
        """Right-padded input_ids, attention_mask, labels (answer tokens only) and pixel_values."""
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
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "pixel_values": pixel_values(images)}
        if with_answers:
            batch["labels"] = label_ids
        return batch


# ---------------------------------------------------------------------------------------------
# Stage 1: supervised-contrastive vision tower
# ---------------------------------------------------------------------------------------------
def pooled_patch_features(vision_tower, pixels: torch.Tensor) -> torch.Tensor:
    """Mean of the last layer's patch tokens: the features the LM's connector will read."""
    pixels = pixels.to(vision_tower.device)
    hidden = vision_tower(pixels, output_hidden_states=True).hidden_states[-1]
    return hidden[:, 1:].mean(dim=1)


def supervised_contrastive_loss(embeddings: torch.Tensor, classes: torch.Tensor, temperature: float) -> torch.Tensor:
    """SupCon (Khosla et al. 2020): pull together views of one class, push apart the rest."""
    z = F.normalize(embeddings, dim=-1)
    logits = z @ z.T / temperature
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, -1e9)
    positives = (classes[:, None] == classes[None, :]) & ~self_mask
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    return -(log_prob * positives).sum(1).div(positives.sum(1).clamp(min=1)).mean()


class ContrastiveHead(torch.nn.Module):
    """Training-only heads on the pooled tower features (dropped afterwards): a projection for
    the contrastive loss and, optionally, one linear classifier per identity attribute."""

    def __init__(self, hidden: int):
        super().__init__()
        self.projection = torch.nn.Sequential(
            torch.nn.Linear(hidden, 2 * hidden), torch.nn.GELU(), torch.nn.Linear(2 * hidden, hidden)
        )
        self.attributes = torch.nn.ModuleDict(
            {name: torch.nn.Linear(hidden, len(values)) for name, values in ATTRIBUTE_VALUES.items()}
        )

    def loss(
        self,
        features: torch.Tensor,
        classes: torch.Tensor,
        attribute_labels: dict[str, torch.Tensor],
        temperature: float,
        attribute_weight: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        contrastive = supervised_contrastive_loss(self.projection(features), classes, temperature)
        if attribute_weight == 0:
            return contrastive, torch.zeros(())
        attribute = torch.stack(
            [F.cross_entropy(head(features), attribute_labels[name]) for name, head in self.attributes.items()]
        ).mean()
        return contrastive + attribute_weight * attribute, attribute


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


# ---------------------------------------------------------------------------------------------
# Training batches: one random stream per (stage, step), built here or in worker processes
# ---------------------------------------------------------------------------------------------
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
            examples = [self.tasks.sample(rng, kind) for _ in range(self.args.batch_size)]
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


@torch.no_grad()
def embedding_verification(vision_tower, eval_sets: dict) -> dict[str, float]:
    """Weighted same/different accuracy of the tower's pooled features alone (cosine of the mean
    reference feature with the query's), the threshold fitted on the training-identity set.
    A diagnostic of the contrastive stage: how much identity the features carry."""
    was_training = vision_tower.training
    vision_tower.eval()

    def similarities(examples):
        values = []
        for example in examples:
            features = F.normalize(pooled_patch_features(vision_tower, pixel_values(example.images)), dim=-1)
            values.append(float(F.normalize(features[:-1].mean(0), dim=0) @ features[-1]))
        return np.asarray(values)

    train = eval_sets["train"]["overall"]
    train_sims, train_labels = similarities(train), np.asarray([e.answer.lower() == "yes" for e in train])
    candidates = np.unique(train_sims)
    scores = [
        0.5 * (train_sims[train_labels] >= t).mean() + 0.5 * (train_sims[~train_labels] < t).mean() for t in candidates
    ]
    threshold = candidates[int(np.argmax(scores))]
    results = {"train/overall": float(max(scores))}
    for name, examples in eval_sets["held_out"].items():
        if examples:
            sims, labels = similarities(examples), np.asarray([e.answer.lower() == "yes" for e in examples])
            results[f"held_out/{name}"] = float(
                0.5 * (sims[labels] >= threshold).mean() + 0.5 * (sims[~labels] < threshold).mean()
            )
    vision_tower.train(was_training)
    return {key: round(value, 4) for key, value in results.items()}


# ---------------------------------------------------------------------------------------------
# Evaluation: same/different with raw references in context
# ---------------------------------------------------------------------------------------------
def comparison_eval_set(world: World, identities: str, num_references: int, seed: int, limit: int | None = None):
    """Fixed same/different examples: per identity a positive and a random negative; per look-alike
    identity a positive and a negative showing its twin. Queries from sets A and B for held-out.
    Each as the comparison question and as a named recognition question (``named/...``)."""
    tasks = WorldTasks(
        world, identities=identities, query_environments=("A", "B") if identities == "held_out" else ("A",)
    )
    rng = np.random.default_rng([world.seed, 7, seed])
    anchors = world.split(identities)
    if limit is not None:
        anchors = [anchors[i] for i in sorted(rng.choice(len(anchors), size=min(limit, len(anchors)), replace=False))]
    sets = {"overall": [], "look_alike": [], "named/overall": [], "named/look_alike": []}
    named = functools.partial(tasks.named_question, kind="recognition")
    for anchor in anchors:
        for positive in (True, False):
            for prefix, task in (("", tasks.compare), ("named/", named)):
                sets[prefix + "overall"].append(
                    task(rng, num_references, positive=positive, look_alike=False, anchor=anchor)
                )
                if anchor in world.look_alike_of:
                    sets[prefix + "look_alike"].append(
                        task(rng, num_references, positive=positive, look_alike=True, anchor=anchor)
                    )
    return sets


@torch.no_grad()
def comparison_predictions(model, encoder: TextEncoder, examples, batch_size: int = 64) -> list[bool]:
    """Predicted "yes" per example: the higher of the next-token logits of "yes" and "no"."""
    yes, no = encoder.tokenizer.convert_tokens_to_ids(["yes", "no"])
    predictions = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        batch = to_device(encoder.batch(chunk, with_answers=False), model.device)
        logits = model(**batch).logits
        last = batch["attention_mask"].sum(1) - 1
        scores = logits[torch.arange(len(chunk), device=logits.device), last]
        predictions.extend((scores[:, yes] > scores[:, no]).tolist())
    return predictions


def weighted_accuracy(examples, predictions) -> dict[str, float]:
    """0.5 * accuracy on positives + 0.5 * accuracy on negatives (the Yo'LLaVA protocol)."""
    positive = [p for e, p in zip(examples, predictions) if e.answer.lower() == "yes"]
    negative = [not p for e, p in zip(examples, predictions) if e.answer.lower() == "no"]
    pos, neg = float(np.mean(positive)), float(np.mean(negative))
    return {"weighted": 0.5 * pos + 0.5 * neg, "positive": pos, "negative": neg, "count": len(examples)}


@torch.no_grad()
def attribute_probe(world: World, vision_tower, head: ContrastiveHead, renders_per_identity: int = 2) -> dict:
    """Held-out accuracy of the stage-1 attribute heads: which details the tower's features carry."""
    held_out = world.split("held_out")
    environments = world.environment_set("A")
    rng = np.random.default_rng([world.seed, 8])
    identity_ids = [i for i in held_out for _ in range(renders_per_identity)]
    images = [world.render_array([i], environments[int(rng.integers(len(environments)))], rng) for i in identity_ids]
    was_training = vision_tower.training
    vision_tower.eval()
    features = pooled_patch_features(vision_tower, pixel_values(images))
    vision_tower.train(was_training)
    results = {}
    for name, classifier in head.attributes.items():
        labels = torch.tensor([ATTRIBUTE_VALUES[name].index(getattr(world.identities[i], name)) for i in identity_ids])
        labels = labels.to(features.device)
        accuracy = (classifier(features).argmax(-1) == labels).float().mean().item()
        results[name] = {"accuracy": round(accuracy, 3), "chance": round(1 / len(ATTRIBUTE_VALUES[name]), 3)}
    return results


def evaluate(model, encoder: TextEncoder, eval_sets: dict) -> dict:
    model.eval()
    results = {}
    for split_name, sets in eval_sets.items():
        for set_name, examples in sets.items():
            if not examples:
                continue
            predictions = comparison_predictions(model, encoder, examples)
            results[f"{split_name}/{set_name}"] = weighted_accuracy(examples, predictions)
            if split_name == "held_out":
                shifted = [(e, p) for e, p in zip(examples, predictions) if "environment_shift" in e.tags]
                if shifted and {e.answer.lower() for e, _ in shifted} == {"yes", "no"}:
                    results[f"{split_name}/{set_name}/environment_shift"] = weighted_accuracy(*zip(*shifted))
    model.train()
    return results


def against_source(model, source, encoder: TextEncoder, eval_sets: dict) -> dict:
    """This backbone minus the one it continued, on the same held-out examples: the paired difference of
    weighted accuracy per set (`icpt.evaluation.statistics.paired_difference`: bootstrap interval, p-value)."""
    from icpt.evaluation.statistics import paired_difference

    results = {}
    for set_name, examples in eval_sets["held_out"].items():
        if not examples:
            continue
        truth = [e.answer.lower() == "yes" for e in examples]
        scores = [
            [float(p == t) for p, t in zip(comparison_predictions(m, encoder, examples), truth)] for m in (model, source)
        ]
        results[f"held_out/{set_name}"] = paired_difference(scores[0], scores[1], positive=truth)
    return results


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------
def start_from_export(model, tokenizer, folder: Path) -> dict:
    """Loads an exported backbone's weights into ``model`` (built from this run's settings) and returns
    the export's ``training_results.json``."""
    from transformers import AutoTokenizer, LlavaForConditionalGeneration

    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"--init-from {folder}: no model.safetensors there; pass a folder this script exported."
        )
    if not (folder / "training_results.json").is_file():
        raise FileNotFoundError(
            f"--init-from {folder}: no training_results.json there; pass a folder this script exported."
        )
    if AutoTokenizer.from_pretrained(folder).get_vocab() != tokenizer.get_vocab():
        raise ValueError(f"--init-from {folder}: its tokenizer differs from the one this script builds.")
    exported = LlavaForConditionalGeneration.from_pretrained(folder)
    try:
        model.load_state_dict(exported.state_dict())
    except RuntimeError as error:
        raise ValueError(
            f"--init-from {folder}: its weights do not fit this run's model settings (--patch-size, "
            f"--vision-hidden, ...; its training_results.json lists the ones it was trained with): {error}"
        ) from None
    return json.loads((folder / "training_results.json").read_text())


def save_checkpoint(path: Path, state: dict) -> None:
    """Write to a temporary file, then rename: an interrupted save never leaves a broken file."""
    temporary = path.with_suffix(".tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)


def cosine_lr(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def model_card(
    args, results: dict, state: dict, num_parameters: int, size_mb: float, probe: dict | None = None,
    compared: dict | None = None,
) -> str:
    def row(identities: str, negatives: str, result: dict) -> str:
        numbers = " | ".join(f"{result[key]:.3f}" for key in ("weighted", "positive", "negative"))
        return f"| {identities} | {negatives} | {numbers} | {result['count']} |"

    extra_identities = (
        f" ({args.extra_training_identities} identities added to the world's own training split, in look-alike "
        "pairs, none equal to or one detail from a held-out identity)"
        if args.extra_training_identities
        else ""
    )

    # a run started from an exported backbone (--init-from) continued its stage 3
    source = state.get("source")
    stage_2_look_alikes = source["look_alike_fraction"] if source else args.look_alike_fraction
    stage_3 = f"{state.get('questions_step', 0)} steps, tower learning rate {args.tower_lr}"
    if source:
        continued = f", then {stage_3}, {args.look_alike_fraction:.0%} look-alike negatives"
        stage_3 = f"{source['questions_step']} steps, tower learning rate {source['tower_lr']}" + (
            continued if state.get("questions_step") else ""
        )
    held, look = results["held_out/overall"], results["held_out/look_alike"]
    shift = results.get("held_out/overall/environment_shift")
    train = results.get("train/overall")
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: image-text-to-text",
        "tags: [icpt, llava, synthetic]",
        "---",
        "",
        "# ICPT world backbone (embedded default)",
        "",
        "A small `LlavaForConditionalGeneration` (CLIP vision tower + Llama language model, "
        f"{num_parameters / 1e6:.1f} M parameters, {size_mb:.0f} MB) trained from scratch by ICPT's "
        "`examples/pretrain_world_backbone.py` on the project's generated world (`icpt.world`): "
        f"{args.image_size}x{args.image_size} images of synthetic objects with fine-grained attributes "
        "on photo and texture backgrounds. It exists so that ICPT can be demonstrated and tested offline "
        "on a CPU, where no pretrained vision encoder is available (it can be trained on a CPU too; see "
        "Training for where this one was).",
        "",
        "**What it is not**: a general vision-language model. It knows only the world's vocabulary "
        "and objects; on real photos its answers mean nothing.",
        "",
        "## Training",
        "",
        f"Generic world tasks only, on training identities in environment set A{extra_identities}: a "
        f"supervised-contrastive stage on the vision tower ({state['contrastive_step']} steps, with attribute "
        f"classifiers at weight {args.attribute_weight}), then connector + language model on same/different "
        f"comparison ({stage_2_look_alikes:.0%} look-alike negatives) and object/scene descriptions "
        f"({state['comparison_step']} steps, tower frozen), then the whole model on named questions "
        '(reference images in a preamble, "the object is <image> <image>.", then the recognition and '
        'attribute questions of ICPT episodes about "the object" in a query scene) mixed with comparison and '
        f"descriptions ({stage_3}). "
        "It never saw ICPT prompts, held-out identities or environment set B."
        + (
            f" This run started from `{args.init_from}`, a backbone trained as above, and continued from there."
            if source
            else ""
        )
        + (
            f" Then the evaluation's answer formats ({state['formats_step']} steps, tower learning rate "
            f"{args.format_tower_lr}): half of the steps ICPT episodes of the presence, attribute, caption, either/or "
            "and VQA tasks asked with the named concepts' photos in context under their labels (\"<w12> is <image> "
            '<image>.", training identities only), the other half stage 3\'s tasks; the only stage with concept '
            "labels, and never an ICPT prompt."
            if state.get("formats_step")
            else ""
        ),
        "",
        f"Total training time: {state['wall_seconds'] / 60:.1f} minutes wall-clock "
        f"({state['cpu_seconds'] / 60:.0f} CPU-minutes of the training process), over one or more resumed "
        "sittings: "
        + "; ".join(f"{seconds / 60:.1f} min on {where}" for where, seconds in state.get("devices", {}).items())
        + ".",
        "",
        "## Measured: same/different with raw reference images in context",
        "",
        f'Question: "{COMPARE_QUESTION}" after {args.eval_references} reference images of an identity and '
        'one query image. Decision: the higher next-token logit of "yes" and "no". '
        "Weighted accuracy = 0.5 x accuracy on positives + 0.5 x accuracy on negatives. One seed.",
        "",
        "| identities | negatives | weighted | positives | negatives | examples |",
        "| --- | --- | --- | --- | --- | --- |",
        row("held-out", "random held-out", held),
        row("held-out", "look-alike twin (one detail differs)", look),
    ]
    if shift:
        lines.append(row("held-out, query in environment set B", "random held-out", shift))
    if "held_out/named/overall" in results:
        lines.append(row("held-out, named recognition question", "random held-out", results["held_out/named/overall"]))
        lines.append(
            row("held-out, named recognition question", "look-alike twin", results["held_out/named/look_alike"])
        )
    if train:
        lines.append(row("training (new renders)", "random training", train))
    if compared:
        lines += [
            "",
            f"Against the backbone it continued (`{state['source']['path']}`), on the same held-out examples: "
            "the paired difference of weighted accuracy (this one minus the source), 95 % bootstrap interval, "
            "permutation p-value.",
            "",
            "| held-out set | difference | interval | p |",
            "| --- | --- | --- | --- |",
        ]
        for name, value in compared.items():
            if value["difference"] is not None:
                interval = f"[{value['low']:+.3f}, {value['high']:+.3f}]" if value["low"] is not None else "–"
                p_value = "–" if value["p_value"] is None else f"{value['p_value']:.3f}"
                lines.append(f"| {name.removeprefix('held_out/')} | {value['difference']:+.3f} | {interval} | {p_value} |")
    tokens = (args.image_size // args.patch_size) ** 2
    lines += ["", f"Each reference or query image costs {tokens} tokens in context.", ""]
    if probe:
        lines += [
            "## Measured: which details the vision tower sees",
            "",
            "Held-out accuracy of the stage-1 attribute classifiers on the tower's pooled features "
            "(2 renders per held-out identity, environment set A). An attribute near chance is a detail the "
            "pooled features do not carry; the language model reads all image tokens, so this indicates, but "
            "does not bound, what it can see. Look-alikes that differ only in such a detail are hard for it.",
            "",
            "| attribute | accuracy | chance |",
            "| --- | --- | --- |",
        ]
        lines += [f"| {name} | {value['accuracy']:.2f} | {value['chance']:.2f} |" for name, value in probe.items()]
        lines.append("")
    lines += [
        "## Use",
        "",
        "```python",
        "from transformers import AutoModelForImageTextToText, AutoProcessor",
        "model = AutoModelForImageTextToText.from_pretrained(path)",
        "processor = AutoProcessor.from_pretrained(path)",
        "```",
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--output-dir", default=str(REPO_ROOT / "icpt" / "default" / "backbone"), help="final HF-format model"
    )
    parser.add_argument(
        "--work-dir", default=str(REPO_ROOT / "outputs" / "world_backbone"), help="checkpoints, render cache, log"
    )
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint in --work-dir")
    parser.add_argument("--max-minutes", type=float, default=60.0, help="stop (after a checkpoint) after this long")
    parser.add_argument("--checkpoint-minutes", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", help="where the model trains"
    )
    parser.add_argument(
        "--workers", type=int, default=0, help="processes that render and build batches ahead (0: in this process)"
    )
    parser.add_argument(
        "--init-from",
        default=None,
        help="an exported backbone folder to start from: its stages 1 and 2 count as done, and the run "
        "trains stage 3 (--question-steps) on it; the model settings must match it",
    )
    parser.add_argument("--seed", type=int, default=0, help="the world's seed, and the training seed")
    parser.add_argument("--num-identities", type=int, default=1000)
    parser.add_argument(
        "--extra-training-identities",
        type=int,
        default=0,
        help="identities added to the training split only, in look-alike pairs (`World(extra_training_identities=)`)",
    )
    parser.add_argument(
        "--renders-per-identity", type=int, default=48, help="pre-rendered views per training identity"
    )
    # model
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--patch-size", type=int, default=16)
    parser.add_argument("--vision-hidden", type=int, default=128)
    parser.add_argument("--vision-layers", type=int, default=4)
    parser.add_argument("--text-hidden", type=int, default=256)
    parser.add_argument("--text-layers", type=int, default=4)
    # stage 1
    parser.add_argument("--contrastive-steps", type=int, default=3000)
    parser.add_argument("--contrastive-identities", type=int, default=32)
    parser.add_argument("--contrastive-pairs", type=int, default=8, help="look-alike pairs per contrastive batch")
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--contrastive-lr", type=float, default=1e-3)
    parser.add_argument("--temperature", type=float, default=0.1)
    parser.add_argument(
        "--attribute-weight",
        type=float,
        default=1.0,
        help="weight of the auxiliary attribute classification in stage 1 (0: off)",
    )
    # stage 2
    parser.add_argument("--comparison-steps", type=int, default=6000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--look-alike-fraction", type=float, default=0.25)
    parser.add_argument(
        "--question-steps",
        type=int,
        default=1500,
        help="stage 3: steps on named questions (+ comparison and descriptions) with the tower tuned too",
    )
    parser.add_argument("--tower-lr", type=float, default=1e-4, help="stage 3's peak learning rate for the tower")
    parser.add_argument(
        "--format-steps",
        type=int,
        default=0,
        help="stage 4 (a continuation, e.g. with --init-from): steps teaching the evaluation's answer formats "
        "(labelled questions: presence, attribute, caption, either/or, VQA with photos in context under labels) "
        "mixed with stage 3's tasks",
    )
    parser.add_argument(
        "--format-tower-lr", type=float, default=0.0, help="stage 4's peak learning rate for the tower (0: frozen)"
    )
    parser.add_argument("--describe-every", type=int, default=3, help="every n-th step is a description step")
    # evaluation
    parser.add_argument("--eval-every", type=int, default=500, help="steps between held-out evaluations")
    parser.add_argument("--eval-references", type=int, default=3)
    parser.add_argument("--eval-limit", type=int, default=None, help="identities per evaluation (all when unset)")
    parser.add_argument("--export-now", action="store_true", help="measure and save the current state, then stop")
    return parser.parse_args(argv)


def log(work_dir: Path, message: str) -> None:
    line = f"[{time.strftime('%H:%M:%S')}] {message}"
    print(line, flush=True)
    with open(work_dir / "log.txt", "a") as handle:
        handle.write(line + "\n")


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    work_dir = Path(args.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = work_dir / "checkpoint.pt"
    if checkpoint_path.exists() and not args.resume and not args.export_now:
        raise FileExistsError(f"{checkpoint_path} exists: pass --resume to continue it, or choose another --work-dir.")
    if args.resume and not checkpoint_path.exists():
        raise FileNotFoundError(f"No checkpoint to resume at {checkpoint_path}; run once without --resume first.")
    started, started_cpu = time.time(), time.process_time()

    world = World(
        seed=args.seed,
        num_identities=args.num_identities,
        image_size=args.image_size,
        extra_training_identities=args.extra_training_identities,
    )
    tokenizer = build_tokenizer()
    processor = build_processor(tokenizer, args.image_size, args.patch_size)
    model = build_model(tokenizer, args)
    encoder = TextEncoder(tokenizer, model.config.image_seq_length)
    vision_tower = model.model.vision_tower
    head = ContrastiveHead(args.vision_hidden)
    state = {"contrastive_step": 0, "comparison_step": 0, "wall_seconds": 0.0, "cpu_seconds": 0.0, "history": []}
    optimizer_state = None
    if args.resume or (args.export_now and checkpoint_path.exists()):
        checkpoint = torch.load(checkpoint_path, weights_only=False, map_location="cpu")
        model.load_state_dict(checkpoint["model"])
        head.load_state_dict(checkpoint["head"])
        state = checkpoint["state"]
        optimizer_state = checkpoint["optimizer"]
        torch.set_rng_state(checkpoint["torch_rng"])
        log(
            work_dir,
            f"resumed: contrastive step {state['contrastive_step']}, comparison step {state['comparison_step']}",
        )
    else:
        if args.init_from is not None:
            source = start_from_export(model, tokenizer, Path(args.init_from))
            state["contrastive_step"], state["comparison_step"] = args.contrastive_steps, args.comparison_steps
            # the source's training time and history count towards this backbone's
            for key in ("wall_seconds", "cpu_seconds", "devices", "history"):
                state[key] = source["state"][key]
            state["source"] = {
                "path": str(args.init_from),
                "questions_step": source["state"].get("questions_step", 0),
                "look_alike_fraction": source["args"]["look_alike_fraction"],
                "tower_lr": source["args"]["tower_lr"],
            }
            log(work_dir, f"starting from {args.init_from}: stages 1 and 2 count as done")
        (work_dir / "args.json").write_text(json.dumps(vars(args), indent=2))

    num_parameters = sum(p.numel() for p in model.parameters())
    log(
        work_dir,
        f"model: {num_parameters / 1e6:.2f} M parameters; world: {len(world.split('train'))} training / "
        f"{len(world.split('held_out'))} held-out identities",
    )

    # Pre-rendered training views (training identities, environment set A only), cached on disk.
    bank_path = (
        work_dir
        / f"bank_seed{args.seed}_n{args.num_identities}+{args.extra_training_identities}_r{args.renders_per_identity}"
        f"_s{args.image_size}.npz"
    )
    if bank_path.exists():
        bank = RenderBank.load(str(bank_path))
    else:
        tick = time.time()
        bank = prerender_bank(world, world.split("train"), args.renders_per_identity, args.seed, args.workers)
        bank.save(str(bank_path.with_suffix(".tmp.npz")))
        os.replace(bank_path.with_suffix(".tmp.npz"), bank_path)
        log(
            work_dir,
            f"rendered {bank.images.shape[0] * bank.images.shape[1]} training views in {time.time() - tick:.0f} s",
        )
    tasks = WorldTasks(world, bank=bank, look_alike_fraction=args.look_alike_fraction)
    batches = TrainingBatches(world, bank, tasks, encoder, args)
    # forked before the model moves to an accelerator: workers only build batches on the CPU
    pool = (
        multiprocessing.get_context("fork").Pool(args.workers, initializer=_start_worker, initargs=(batches,))
        if args.workers > 0
        else None
    )
    ahead = 2 * args.workers
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True  # ignored on a CPU
    # where the training ran, for the card ("NVIDIA H100 80GB HBM3 with 15 batch workers", "CPU, 2 threads")
    if device.type == "cuda":
        where = f"{torch.cuda.get_device_name(device)} with {args.workers} batch workers"
    else:
        where = f"CPU, {args.threads} threads" + (f", {args.workers} batch workers" if args.workers else "")
    model.to(device)
    head.to(device)
    eval_sets = {
        "held_out": comparison_eval_set(world, "held_out", args.eval_references, seed=1, limit=args.eval_limit),
        "train": {
            "overall": comparison_eval_set(world, "train", args.eval_references, seed=2, limit=args.eval_limit or 200)[
                "overall"
            ]
        },
    }

    def elapsed_minutes() -> float:
        return (time.time() - started) / 60

    def checkpoint(optimizer) -> None:
        state["wall_seconds"] += time.time() - checkpoint.last_wall
        devices = state.setdefault("devices", {})
        devices[where] = devices.get(where, 0.0) + time.time() - checkpoint.last_wall
        state["cpu_seconds"] += time.process_time() - checkpoint.last_cpu
        checkpoint.last_wall, checkpoint.last_cpu = time.time(), time.process_time()
        save_checkpoint(
            checkpoint_path,
            {
                "model": model.state_dict(),
                "head": head.state_dict(),
                "optimizer": optimizer.state_dict() if optimizer is not None else None,
                "state": state,
                "torch_rng": torch.get_rng_state(),
            },
        )
        log(work_dir, f"checkpoint saved ({state['wall_seconds'] / 60:.1f} min of training so far)")

    checkpoint.last_wall, checkpoint.last_cpu = started, started_cpu
    last_checkpoint = time.time()
    out_of_time = False

    # -- stage 1: contrastive vision tower ----------------------------------------------------
    if state["contrastive_step"] < args.contrastive_steps and not args.export_now:
        params = list(vision_tower.parameters()) + list(head.parameters())
        optimizer = torch.optim.AdamW(params, lr=args.contrastive_lr, weight_decay=0.05)
        if optimizer_state is not None and state.get("optimizer_stage") == "contrastive":
            optimizer.load_state_dict(optimizer_state)
        state["optimizer_stage"] = "contrastive"
        vision_tower.train()
        running, running_attribute, tick = [], [], time.time()
        jobs = (("contrastive", step, "") for step in range(state["contrastive_step"], args.contrastive_steps))
        for _, (pixels, classes, attribute_labels) in batch_stream(batches, jobs, pool, ahead):
            step = state["contrastive_step"]
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(step, args.contrastive_steps, args.contrastive_lr, warmup=100)
            features = pooled_patch_features(vision_tower, normalize_pixels(pixels.to(device)))
            loss, attribute_loss = head.loss(
                features, classes.to(device), to_device(attribute_labels, device), args.temperature,
                args.attribute_weight,
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            running.append(loss.item())
            running_attribute.append(attribute_loss.item())
            state["contrastive_step"] += 1
            if state["contrastive_step"] % 50 == 0:
                log(
                    work_dir,
                    f"contrastive step {state['contrastive_step']}/{args.contrastive_steps} "
                    f"loss {np.mean(running):.3f} (attributes {np.mean(running_attribute):.3f}) "
                    f"({(time.time() - tick) / len(running):.2f} s/step)",
                )
                running, running_attribute, tick = [], [], time.time()
            if state["contrastive_step"] % args.eval_every == 0 or state["contrastive_step"] == args.contrastive_steps:
                verification = embedding_verification(vision_tower, eval_sets)
                entry = {"contrastive_step": state["contrastive_step"], "embedding": verification}
                log(work_dir, "embedding verification " + json.dumps(verification))
                if args.attribute_weight > 0:  # which details the features carry so far (held-out)
                    probe = attribute_probe(world, vision_tower, head)
                    entry["attributes"] = {name: value["accuracy"] for name, value in probe.items()}
                    log(work_dir, "attribute probe " + json.dumps(entry["attributes"]))
                state["history"].append(entry)
                tick = time.time()
            if time.time() - last_checkpoint > 60 * args.checkpoint_minutes:
                checkpoint(optimizer)
                last_checkpoint = time.time()
            if elapsed_minutes() > args.max_minutes:
                out_of_time = True
                break
        if not out_of_time:
            state["optimizer_stage"] = None
            optimizer_state = None
        checkpoint(optimizer)
        last_checkpoint = time.time()

    def language_stage(name: str, total_steps: int, kinds, tower_lr: float) -> bool:
        """Trains connector + language model (and the tower when ``tower_lr`` > 0) on the task
        ``kinds(step)`` names at each step. Returns whether the time budget ran out."""
        counter = f"{name}_step"
        tune_tower = tower_lr > 0
        vision_tower.requires_grad_(tune_tower)
        vision_tower.eval()  # no dropout in the tower; eval keeps its features deterministic
        language = [p for n, p in model.named_parameters() if not n.startswith("model.vision_tower.")]
        groups = [{"params": language, "peak": args.lr}]
        if tune_tower:
            groups.append({"params": list(vision_tower.parameters()), "peak": tower_lr})
        optimizer = torch.optim.AdamW(groups, lr=args.lr, weight_decay=0.01)
        if optimizer_state is not None and state.get("optimizer_stage") == name:
            optimizer.load_state_dict(optimizer_state)
        state["optimizer_stage"] = name
        params = [p for group in groups for p in group["params"]]
        running, tick, last_saved = {}, time.time(), time.time()
        jobs = ((name, step, kinds(step)) for step in range(state[counter], total_steps))
        for (_, step, kind), batch in batch_stream(batches, jobs, pool, ahead):
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(step, total_steps, group["peak"], warmup=200)
            loss = model(**to_device(batch, device)).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            running.setdefault(kind, []).append(loss.item())
            state[counter] += 1
            done = state[counter]
            if done % 50 == 0:
                losses = " ".join(f"{k} loss {np.mean(v):.3f}" for k, v in sorted(running.items()))
                log(work_dir, f"{name} step {done}/{total_steps} {losses} ({(time.time() - tick) / 50:.2f} s/step)")
                running, tick = {}, time.time()
            if done % args.eval_every == 0:
                results = evaluate(model, encoder, eval_sets)
                state["history"].append({counter: done, **{k: round(v["weighted"], 4) for k, v in results.items()}})
                log(work_dir, "eval " + json.dumps(state["history"][-1]))
                tick = time.time()
            if time.time() - last_saved > 60 * args.checkpoint_minutes:
                checkpoint(optimizer)
                last_saved = time.time()
            if elapsed_minutes() > args.max_minutes:
                checkpoint(optimizer)
                return True
        state["optimizer_stage"] = None
        checkpoint(optimizer)
        return False

    # -- stage 2: connector + language model on comparison and descriptions, tower frozen -------
    if not out_of_time and state["comparison_step"] < args.comparison_steps and not args.export_now:
        out_of_time = language_stage(
            "comparison",
            args.comparison_steps,
            lambda step: "describe" if (step + 1) % args.describe_every == 0 else "compare",
            tower_lr=0.0,
        )
        optimizer_state = None

    # -- stage 3: named questions (the layout of ICPT episodes), the whole model tuned ----------
    state.setdefault("questions_step", 0)
    if not out_of_time and state["questions_step"] < args.question_steps and not args.export_now:
        out_of_time = language_stage(
            "questions",
            args.question_steps,
            lambda step: "describe"
            if (step + 1) % args.describe_every == 0
            else ("compare", "named_question")[step % 2],
            tower_lr=args.tower_lr,
        )

    # -- stage 4: the evaluation's answer formats, labels bound to photos in context ---------------
    # Half the steps are labelled questions; the rest keep what stages 2-3 taught (recognition among them).
    state.setdefault("formats_step", 0)
    if not out_of_time and state["formats_step"] < args.format_steps and not args.export_now:
        optimizer_state = optimizer_state if state.get("optimizer_stage") == "formats" else None
        out_of_time = language_stage(
            "formats",
            args.format_steps,
            lambda step: "describe"
            if (step + 1) % args.describe_every == 0
            else ("labelled_question", "compare", "labelled_question", "named_question")[step % 4],
            tower_lr=args.format_tower_lr,
        )

    if pool is not None:
        pool.terminate()
    if out_of_time:
        log(work_dir, f"time budget of {args.max_minutes} min spent; continue with --resume")
        return {"finished": False, "state": state}

    # -- final measurement and export ---------------------------------------------------------
    if args.export_now and not checkpoint_path.exists():
        raise FileNotFoundError(f"Nothing to export: no checkpoint at {checkpoint_path}.")
    results = evaluate(model, encoder, eval_sets)
    log(work_dir, "final eval " + json.dumps(results))
    probe = attribute_probe(world, vision_tower, head) if args.attribute_weight > 0 else None
    log(work_dir, "attribute probe " + json.dumps(probe))
    compared = None
    if state.get("source", {}).get("path"):  # a continuation says what it changed on the same examples
        from transformers import LlavaForConditionalGeneration

        source_model = LlavaForConditionalGeneration.from_pretrained(state["source"]["path"]).to(device).eval()
        compared = against_source(model.eval(), source_model, encoder, eval_sets)
        log(work_dir, "against the source backbone " + json.dumps(compared))
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    size_mb = sum(f.stat().st_size for f in output_dir.iterdir() if f.is_file()) / 2**20
    (output_dir / "README.md").write_text(model_card(args, results, state, num_parameters, size_mb, probe, compared))
    # The world it was trained on, so that users (and `icpt demo`) rebuild the same splits: `World(**settings)`
    # (without the extra training identities: they change no split, and only training used them).
    world_settings = {"seed": args.seed, "num_identities": args.num_identities, "image_size": args.image_size}
    (output_dir / "world.json").write_text(json.dumps(world_settings, indent=1))
    (output_dir / "training_results.json").write_text(
        json.dumps({"results": results, "attribute_probe": probe, "against_source": compared, "state": state,
                    "args": vars(args)}, indent=1)
    )
    log(work_dir, f"saved to {output_dir} ({size_mb:.1f} MB)")
    return {"finished": True, "results": results, "state": state}


if __name__ == "__main__":
    main()
