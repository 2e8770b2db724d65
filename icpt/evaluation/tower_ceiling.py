"""What the frozen vision tower allows for recognition: a verifier trained on the tower's patch features.

ICPT's rows, the photos in context and any other reader see a concept only through the backbone's frozen vision
tower. This study trains a small verifier that receives every patch feature of a concept's reference photos and of
the query photo (the tower layers ICPT's projector reads), on recognition episodes of training identities, and
scores it on the held-out recognition questions `icpt eval` asks (the same questions, in the same order), with the
swap test. A verifier no better than the photos in context says that, with this much supervision, the tower and
not the reader bounds recognition.

    python examples/tower_recognition_ceiling.py --compare-run outputs/eval --compare-methods icpt raw_references_adapted

Example:

```python
>>> from icpt.evaluation.tower_ceiling import TowerCeilingArguments, tower_recognition_ceiling
>>> report = tower_recognition_ceiling(TowerCeilingArguments(train_episodes=64, epochs=1, questions=40))  # doctest: +SKIP
>>> sorted(report["verifier"])  # doctest: +SKIP
['all', 'environment_shift', 'look_alike', 'multi_concept']
```
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import NormalDist

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoModelForImageTextToText, AutoProcessor

from icpt.inference import DEFAULT_BACKBONE
from icpt.world.tasks import build_episodes
from icpt.world.world import world_for
from modeling_icpt.concept_projector import ProjectorBlock
from modeling_icpt.reference_features import REFERENCE_FEATURE_CACHE, reference_features

from .episodes import DEFAULT_MIN_PER_SPLIT, DEFAULT_RECOGNITION_QUESTIONS, world_episodes
from .scoring import SPLITS


@dataclass
class TowerCeilingArguments:
    """`tower_recognition_ceiling`: a verifier on the frozen tower's features, trained and scored."""

    backbone: str = field(default=str(DEFAULT_BACKBONE), metadata={"help": "the backbone folder (with its world.json)"})
    layers: list[int] = field(default_factory=lambda: [2, -1], metadata={
        "help": "tower layers the verifier reads, hidden_states style (the default projector's vision_layers)"})
    train_episodes: int = field(default=16000, metadata={
        "help": "recognition episodes of training identities (the default reader stage renders 16,000 episodes)"})
    epochs: int = field(default=8, metadata={"help": "passes over the training episodes"})
    batch_size: int = field(default=64, metadata={"help": "episodes per step"})
    learning_rate: float = field(default=3e-4, metadata={"help": "AdamW peak learning rate (cosine, 100 warm-up steps)"})
    width: int = field(default=128, metadata={"help": "the verifier's width"})
    blocks: int = field(default=2, metadata={"help": "cross- then self-attention blocks of the verifier"})
    questions: int = field(default=DEFAULT_RECOGNITION_QUESTIONS, metadata={
        "help": "held-out recognition questions: the first ones `icpt eval` asks with the same --seed"})
    min_per_split: int = field(default=DEFAULT_MIN_PER_SPLIT, metadata={
        "help": "at least this many questions of each split (as `icpt eval --min-per-split`)"})
    seed: int = field(default=0, metadata={"help": "the questions' seed (icpt eval's first seed is 0) and the verifier's"})
    threads: int = field(default=2, metadata={"help": "CPU threads"})
    compare_run: str | None = field(default=None, metadata={
        "help": "an `icpt eval` output folder: pair the verifier with its methods on the same questions"})
    compare_methods: list[str] = field(default_factory=lambda: ["icpt", "raw_references_adapted"], metadata={
        "help": "methods of --compare-run to pair with"})
    output: str | None = field(default=None, metadata={"help": "write the report as JSON here"})


# ------------------------------------------------------------------------------------------------ features


def episode_features(vlm, processor, episodes, layers, desc: str) -> list[dict]:
    """Per episode: the asked concept's reference features `(R, P, d)`, the query's `(P, d)` (float16), the answer,
    the tags and the concept's description (which identity it is)."""
    rows = []
    for episode in tqdm(episodes, desc=desc, unit="episode"):
        concept = next(c for c in episode["concepts"] if c["name"] == episode["target"])
        photos = list(concept["references"]) + [episode["image"]]
        pixel_values = processor.image_processor(images=photos, return_tensors="pt")["pixel_values"]
        features = [f.half() for f in reference_features(vlm, {"pixel_values": pixel_values}, layers)]
        rows.append({"references": torch.stack(features[:-1]), "query": features[-1], "positive": episode["answer"] == "Yes",
                     "tags": list(episode["tags"] or []), "description": concept["description"]})
    return rows


# ------------------------------------------------------------------------------------------------ the verifier


class RecognitionVerifier(nn.Module):
    """Logit of "the concept of these references is in the query photo", from patch features alone."""

    def __init__(self, feature_size: int, patches: int, width: int = 128, blocks: int = 2, max_references: int = 8):
        super().__init__()
        self.reference_norm, self.query_norm = nn.LayerNorm(feature_size), nn.LayerNorm(feature_size)
        self.reference_proj, self.query_proj = nn.Linear(feature_size, width), nn.Linear(feature_size, width)
        self.reference_embedding = nn.Embedding(max_references, width)
        self.position = nn.Parameter(torch.randn(patches, width) * 0.02)  # where a patch sits in its photo
        self.summary = nn.Parameter(torch.randn(1, 1, width) * 0.02)  # the token the answer is read from
        # the projector's block: the query's tokens read the references' patches, then each other
        self.blocks = nn.ModuleList(ProjectorBlock(width, num_heads=4) for _ in range(blocks))
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 1))

    def forward(self, references, reference_index, padding, query):
        """references `(B, R*P, f)`, reference_index `(B, R*P)`, padding `(B, R*P)` True where padded, query `(B, P, f)`."""
        patches = self.position.shape[0]
        position = self.position.repeat(references.shape[1] // patches, 1)
        keys = self.reference_proj(self.reference_norm(references)) + self.reference_embedding(reference_index) + position
        tokens = self.query_proj(self.query_norm(query)) + self.position
        tokens = torch.cat([self.summary.expand(len(tokens), -1, -1), tokens], dim=1)
        for block in self.blocks:
            tokens = block(tokens, keys, padding)
        return self.head(tokens[:, 0]).squeeze(-1)


def collate(rows: list[dict]):
    """Pads each episode's references to the batch's largest count."""
    most, patches, size = max(len(r["references"]) for r in rows), *rows[0]["query"].shape
    references = torch.zeros(len(rows), most * patches, size)
    reference_index = torch.zeros(len(rows), most * patches, dtype=torch.long)
    padding = torch.ones(len(rows), most * patches, dtype=torch.bool)
    for i, row in enumerate(rows):
        count = len(row["references"])
        references[i, : count * patches] = row["references"].float().reshape(count * patches, size)
        reference_index[i, : count * patches] = torch.arange(count).repeat_interleave(patches)
        padding[i, : count * patches] = False
    query = torch.stack([row["query"].float() for row in rows])
    labels = torch.tensor([float(row["positive"]) for row in rows])
    return references, reference_index, padding, query, labels


@torch.no_grad()
def says_yes(verifier, rows, batch_size: int = 128) -> np.ndarray:
    verifier.eval()
    logits = [verifier(*collate(rows[i : i + batch_size])[:4]) for i in range(0, len(rows), batch_size)]
    return (torch.cat(logits) > 0).numpy()


def train_verifier(rows: list[dict], args: TowerCeilingArguments) -> tuple[RecognitionVerifier, list[float]]:
    """Trains a fresh verifier; returns it and the mean loss of each epoch."""
    torch.manual_seed(args.seed)
    patches, size = rows[0]["query"].shape
    verifier = RecognitionVerifier(size, patches, args.width, args.blocks)
    steps_per_epoch = max(len(rows) // args.batch_size, 1)
    total = steps_per_epoch * args.epochs
    optimizer = torch.optim.AdamW(verifier.parameters(), lr=args.learning_rate, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / 100) * 0.5 * (1 + math.cos(math.pi * step / total)))
    rng = np.random.default_rng(args.seed)
    epoch_losses = []
    bar = tqdm(total=total, desc="verifier", unit="step")
    for _ in range(args.epochs):
        order, losses = rng.permutation(len(rows)), []
        verifier.train()
        for step in range(steps_per_epoch):
            *inputs, labels = collate([rows[i] for i in order[step * args.batch_size : (step + 1) * args.batch_size]])
            loss = nn.functional.binary_cross_entropy_with_logits(verifier(*inputs), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            bar.update()
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
        epoch_losses.append(float(np.mean(losses)))
    bar.close()
    return verifier, epoch_losses


# ------------------------------------------------------------------------------------------------ scores


def recognition_scores(yes: np.ndarray, positive: np.ndarray) -> dict:
    """Positive / negative / weighted accuracy and d′ = z(hits) − z(false alarms) (rates kept half a question
    from 0 and 1)."""
    if not positive.any() or positive.all():
        return {"questions": int(len(yes)), "positive": None, "negative": None, "weighted": None, "d_prime": None}
    hits, false_alarms = yes[positive].mean(), yes[~positive].mean()
    z = NormalDist().inv_cdf
    clip = lambda rate, n: min(max(rate, 0.5 / n), 1 - 0.5 / n)  # noqa: E731
    return {"questions": int(len(yes)), "positive": float(hits), "negative": float(1 - false_alarms),
            "weighted": float((hits + 1 - false_alarms) / 2),
            "d_prime": z(clip(hits, positive.sum())) - z(clip(false_alarms, (~positive).sum()))}


def by_split(yes: np.ndarray, rows: list[dict]) -> dict:
    positive = np.array([row["positive"] for row in rows])
    return {split: recognition_scores(yes[mask], positive[mask]) for split in SPLITS
            for mask in [np.array([split == "all" or split in row["tags"] for row in rows])]}


def swap_test(verifier, rows: list[dict], seed: int) -> dict:
    """Each positive's references replaced by another identity's (one reference set per identity, drawn from the
    questions' concepts with another description): the share of answers that change, and "yes" before and after."""
    identities = {}
    for row in rows:
        identities.setdefault(row["description"], row["references"])
    rng = np.random.default_rng([seed, 17])
    positives = [row for row in rows if row["positive"]]
    swapped = []
    for row in positives:
        others = [d for d in identities if d != row["description"]]
        swapped.append({**row, "references": identities[others[int(rng.integers(len(others)))]]})
    before, after = says_yes(verifier, positives), says_yes(verifier, swapped)
    return {"positives": len(positives), "changed": float((before != after).mean()),
            "yes_before": float(before.mean()), "yes_after": float(after.mean())}


def paired_difference(yes: np.ndarray, other_correct: np.ndarray, positive: np.ndarray, seed: int,
                      resamples: int = 9999) -> dict:
    """Weighted recognition of the verifier minus another method's, on the same questions, with a 95 % bootstrap
    interval over questions."""
    correct = yes == positive

    def weighted(c, p):
        return (c[p].mean() + c[~p].mean()) / 2

    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        index = rng.integers(len(yes), size=len(yes))
        draws.append(weighted(correct[index], positive[index]) - weighted(other_correct[index], positive[index]))
    low, high = np.percentile(draws, [2.5, 97.5])
    return {"difference": float(weighted(correct, positive) - weighted(other_correct, positive)),
            "low": float(low), "high": float(high)}


def compared_methods(run: str, methods: list[str], questions, seed: int) -> dict[str, np.ndarray]:
    """Per method of an `icpt eval` run, whether it answered each of `questions` right, in their order; the run's
    question text must match, so a run of other questions is refused."""
    outcomes = [json.loads(line) for line in (Path(run) / "outcomes.jsonl").read_text().splitlines() if line.strip()]
    found = {}
    for method in methods:
        mine = {o["episode"]: o for o in outcomes if o["method"] == method and o["task"] == "recognition"}
        ids = [f"s{seed}-{i:05d}" for i in range(len(questions))]
        missing = [i for i in ids if i not in mine]
        if missing:
            raise ValueError(f"{run} has no recognition answers of {method!r} for {len(missing)} of the questions "
                             f"(e.g. {missing[0]}): run `icpt eval` with --methods {method} and --seeds {seed}.")
        if any(mine[i]["question"] != q for i, q in zip(ids, questions)):
            raise ValueError(f"{run} asked other questions than these (another world, seed or question count).")
        found[method] = np.array([bool(mine[i]["correct"]) for i in ids])
    return found


def tower_recognition_ceiling(args: TowerCeilingArguments) -> dict:
    """Renders the episodes, encodes them with the tower, trains the verifier, prints and returns the report."""
    torch.set_num_threads(args.threads)
    started = time.time()
    backbone = Path(args.backbone)
    world = world_for(backbone)
    vlm = AutoModelForImageTextToText.from_pretrained(backbone).eval()
    processor = AutoProcessor.from_pretrained(backbone)
    cache_size, REFERENCE_FEATURE_CACHE.max_bytes = REFERENCE_FEATURE_CACHE.max_bytes, 0  # every photo is new
    try:
        test = world_episodes(world.seed, len(world.identities), num_recognition=args.questions,
                              min_per_split=args.min_per_split, task_questions=0,
                              generic_questions=0)(args.seed)
        test_rows = episode_features(vlm, processor, test, args.layers, "held-out questions")
        train_rows = []
        for chunk, start in enumerate(range(0, args.train_episodes, 4000)):  # rendered in parts: photos are large
            episodes = build_episodes(world, "train", min(4000, args.train_episodes - start), seed=500 + chunk,
                                      tasks=("recognition",))
            train_rows += episode_features(vlm, processor, episodes, args.layers, f"training episodes, part {chunk + 1}")
    finally:
        REFERENCE_FEATURE_CACHE.max_bytes = cache_size
    verifier, losses = train_verifier(train_rows, args)
    yes = says_yes(verifier, test_rows)
    report = {"settings": asdict(args), "training_loss_per_epoch": losses, "verifier": by_split(yes, test_rows),
              "swap": swap_test(verifier, test_rows, args.seed), "minutes": (time.time() - started) / 60}
    positive = np.array([row["positive"] for row in test_rows])
    if args.compare_run:
        report["compared"] = {}
        for method, correct in compared_methods(args.compare_run, args.compare_methods, test["question"],
                                                args.seed).items():
            report["compared"][method] = {
                "scores": by_split(correct == positive, test_rows),  # a right "yes" is a positive answered right
                "verifier_minus_method": paired_difference(yes, correct, positive, args.seed),
            }
    print(format_report(report))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
        print(f"Wrote {args.output}")
    return report


def format_report(report: dict) -> str:
    settings = report["settings"]
    lines = [f"Verifier on the tower's layers {settings['layers']}, trained on {settings['train_episodes']} recognition "
             f"episodes of training identities ({settings['epochs']} epochs; loss per epoch "
             + ", ".join(f"{loss:.3f}" for loss in report["training_loss_per_epoch"]) + f"), "
             f"{report['minutes']:.1f} minutes.", "",
             "| reader | split | questions | positives | negatives | weighted | d′ |", "| --- | --- | --- | --- | --- | --- | --- |"]
    readers = {"verifier": report["verifier"], **{m: c["scores"] for m, c in report.get("compared", {}).items()}}
    def fmt(value, digits=3):
        return "–" if value is None else f"{value:.{digits}f}"

    for name, splits in readers.items():
        for split, s in splits.items():
            lines.append(f"| {name} | {split} | {s['questions']} | {fmt(s['positive'])} | {fmt(s['negative'])} | "
                         f"{fmt(s['weighted'])} | {fmt(s['d_prime'], 2)} |")
    swap = report["swap"]
    lines += ["", f"Swap test (the verifier): {swap['changed']:.3f} of {swap['positives']} positives changed "
                  f"(yes {swap['yes_before']:.3f} before, {swap['yes_after']:.3f} after)."]
    for method, compared in report.get("compared", {}).items():
        d = compared["verifier_minus_method"]
        lines.append(f"Verifier − {method}, weighted recognition on the same questions: {d['difference']:+.3f} "
                     f"[{d['low']:+.3f}, {d['high']:+.3f}]")
    return "\n".join(lines)
