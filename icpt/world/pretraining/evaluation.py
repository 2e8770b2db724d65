"""What the pretraining measures: same/different with raw references in context (the held-out evaluation), the tower's
features alone, the attribute probe, and a continuation against its source on the same examples."""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from icpt.metrics.statistics import paired_difference
from icpt.world.tasks import WorldTasks
from icpt.world.world import ATTRIBUTE_VALUES, World

from .batches import TextEncoder, pixel_values, to_device
from .contrastive import ContrastiveHead, pooled_patch_features


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
    weighted accuracy per set (`icpt.metrics.statistics.paired_difference`: bootstrap interval, p-value)."""
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
