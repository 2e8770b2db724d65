"""Studies of what a concept's rows carry, on the embedded default or any ICPT checkpoint and its backbone: each a
settings dataclass and a function that loads the model, measures, prints its report and returns the numbers.
`examples/<study>.py` is each one's command line; docs/default_model.md has their results.

- `pooled_image_tokens`: how many rows a concept needs, training-free: the backbone's own image tokens of the
  reference photos, pooled to `rows`, in place of ICPT's rows;
- `per_identity_rows`: whether the frozen language model can read an identity from a few rows at all (rows
  trained per identity, then read under their label, another label, and beside other concepts);
- `held_out_identities`: recognition of held-out identities, paired across projectors (the same photos for each);
- `reference_sensitivity`: whether a projector's answers change when the target's photos are swapped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from icpt.inference import DEFAULT_BACKBONE, DEFAULT_MODEL, answer, load_model
from icpt.metrics import load_metric
from icpt.training.prompt_fitting import train_concept_prompts
from icpt.world.tasks import RECOGNITION_QUESTION, WorldTasks, build_episodes, concept_labels
from icpt.world.world import world_for
from modeling_icpt import ConceptBank
from processing_icpt import ICPTProcessor

from .harness import run_evaluation

TASKS = ("recognition", "attribute")


# --------------------------------------------------------------------------------------------- pooled image tokens
@dataclass
class PooledTokensArguments:
    """`pooled_image_tokens`: the photos' own image tokens, pooled, as a concept's rows."""

    episodes: int = field(default=60, metadata={"help": "held-out episodes"})
    task: str = field(default="recognition", metadata={"choices": TASKS, "help": "the episodes' question"})
    rows: list[int] = field(default_factory=lambda: [1, 4, 16], metadata={
        "help": "rows per concept, or per photo with --layout per-reference (squares)"})
    layout: str = field(default="mean", metadata={"choices": ("mean", "per-reference"),
                        "help": "average the photos before pooling, or pool each photo and concatenate"})
    target_only: bool = field(default=False, metadata={
        "help": "the preamble holds only the concept the question asks about (not every concept)"})
    skip_look_alikes: bool = field(default=False, metadata={
        "help": "leave out episodes whose scene holds the target's look-alike twin"})
    seed: int = field(default=1, metadata={"help": "episode seed (icpt demo uses its --seed + 1)"})
    projector: str = field(default=str(DEFAULT_MODEL), metadata={"help": "supplies the injection only"})
    backbone: str = field(default=str(DEFAULT_BACKBONE), metadata={"help": "the backbone folder (with its world.json)"})


def image_tokens(model, processor, photos) -> torch.Tensor:
    """`(num_photos, tokens, d_lm)`: what the language model receives in place of each photo."""
    messages = [[{"role": "user", "content": [{"type": "image"}]}] for _ in photos]
    return torch.stack(model.image_token_embeddings(**processor(messages=messages, images=[[photo] for photo in photos])))


def pooled_rows(tokens: torch.Tensor, rows: int, layout: str = "mean") -> torch.Tensor:
    """Average-pool each photo's square patch grid to `rows` cells; `layout="mean"` averages the photos
    first (`rows` rows), `"per-reference"` keeps one block of cells per photo (`rows x photos` rows)."""
    if layout == "mean":
        tokens = tokens.mean(0, keepdim=True)
    photos, tokens_per_photo, width = tokens.shape
    side = int(round(tokens_per_photo**0.5))
    grid = tokens.reshape(photos, side, side, width).permute(0, 3, 1, 2)  # (photos, d, side, side)
    cells = int(round(rows**0.5))
    pooled = torch.nn.functional.adaptive_avg_pool2d(grid, cells).flatten(2).transpose(1, 2)  # (photos, rows, d)
    return pooled.reshape(photos * cells * cells, width)


def pooled_image_tokens(args: PooledTokensArguments) -> int:
    """Prints, per number of rows, weighted recognition accuracy (Yo'LLaVA protocol) or, with `task="attribute"`,
    exact-match accuracy on attribute questions ("What colour is <bo>?"). Returns 0."""
    torch.set_num_threads(1)

    # the projector's checkpoint only supplies the injection; every row below replaces its output
    model, processor = load_model(args.projector, backbone=args.backbone), ICPTProcessor.from_pretrained(str(args.projector))
    world = world_for(args.backbone)
    episodes = build_episodes(world, "held_out", args.episodes, seed=args.seed, tasks=(args.task,))
    if args.skip_look_alikes:
        episodes = [episode for episode in episodes if "look_alike" not in episode["tags"]]
    if not episodes:
        raise ValueError("Every drawn episode has a look-alike in its scene: draw more with --episodes.")
    metric = load_metric("recognition")
    tokens = {}
    unit = "concept" if args.layout == "mean" else "reference photo"
    print(f"{len(episodes)} held-out {args.task} episodes; preamble: "
          f"{'the asked concept only' if args.target_only else 'every concept of the episode'}")
    for rows in args.rows:
        predictions, references = [], []
        for episode in episodes:
            names, prompts = [], []
            for concept in episode["concepts"]:
                if args.target_only and concept["name"] != episode["target"]:
                    continue
                key = (episode["question"], concept["name"])
                if key not in tokens:
                    tokens[key] = image_tokens(model, processor, concept["references"])
                names.append(concept["name"])
                prompts.append(pooled_rows(tokens[key], rows, args.layout))
            lengths = torch.tensor([len(p) for p in prompts])  # per-reference: concepts differ in photos
            prompts = torch.nn.utils.rnn.pad_sequence(prompts, batch_first=True)
            descriptors = prompts.sum(1) / lengths[:, None]  # the mean of each concept's own rows
            bank = ConceptBank(names, prompts, lengths, torch.zeros(len(names)), descriptors,
                               model.config.base_model_name_or_path, model.backbone_fingerprint)
            predictions.append(answer(model, processor, episode["question"], episode["image"], bank, max_new_tokens=6))
            references.append(episode["answer"])
        if args.task == "attribute":
            exact = sum(p.strip().lower() == r.lower() for p, r in zip(predictions, references)) / len(episodes)
            print(f"{rows:>3} pooled rows per {unit}: exact-match attribute accuracy {exact:.3f} "
                  f"(e.g. {predictions[0]!r} for {references[0]!r})")
            continue
        scores = metric.compute(predictions=predictions, references=[r == "Yes" for r in references])
        shown = {k: "n/a" if scores[k] is None else f"{scores[k]:.3f}"  # n/a: no episode of that kind
                 for k in ("weighted_accuracy", "positive_accuracy", "negative_accuracy")}
        print(f"{rows:>3} pooled rows per {unit}: weighted {shown['weighted_accuracy']} "
              f"(positive {shown['positive_accuracy']}, negative {shown['negative_accuracy']})")
    return 0


# --------------------------------------------------------------------------------------------- per-identity rows
LABEL = "<w1>"
READINGS = ("its own label, alone", "another label, alone", "another label, beside two other concepts")


@dataclass
class PerIdentityRowsArguments:
    """`per_identity_rows`: rows trained per held-out identity, read back three ways (`READINGS`)."""

    rows: int = field(default=8, metadata={"help": "prompt rows per identity"})
    steps: int = field(default=40, metadata={"help": "full-batch Adam steps per identity"})
    identities: int = field(default=8, metadata={"help": "held-out identities to try"})
    train_scenes: int = field(default=24, metadata={"help": "scenes with and without the identity, each"})
    test_scenes: int = field(default=10, metadata={"help": "new scenes with and without it, each"})
    seed: int = field(default=5, metadata={"help": "seed of the identities, scenes and labels"})
    relabel: bool = field(default=False, metadata={
        "help": "fit under a new label at every step (as identity targets are fitted)"})
    projector: str = field(default=str(DEFAULT_MODEL), metadata={"help": "supplies the injection only"})
    backbone: str = field(default=str(DEFAULT_BACKBONE), metadata={"help": "the backbone folder (with its world.json)"})


def per_identity_rows(args: PerIdentityRowsArguments) -> dict[str, float]:
    """Prints weighted accuracy on the new scenes (0.5 x positives + 0.5 x negatives) of each reading and the training
    loss before the first and after the last step, averaged over the identities; returns `{reading: weighted}`."""
    if args.identities < 3:
        raise ValueError("--identities must be at least 3: a reading beside two other concepts uses two other identities' rows")
    torch.set_num_threads(1)

    # the projector's checkpoint only supplies the injection; the trained rows replace its output
    model, processor = load_model(args.projector, backbone=args.backbone), ICPTProcessor.from_pretrained(str(args.projector))
    world = world_for(args.backbone)
    tasks = WorldTasks(world, identities="held_out", look_alike_fraction=0.0)
    rng = np.random.default_rng(args.seed)
    identities = [int(i) for i in rng.choice(world.split("held_out"), args.identities, replace=False)]

    def scenes(identity, count, positive):
        # a named question's last image is a query scene with (positive) or without the identity
        return [
            Image.fromarray(tasks.named_question(rng, 1, kind="recognition", positive=positive, look_alike=False,
                                                 anchor=identity).images[-1])
            for _ in range(count)
        ]

    trained, test, first, last = {}, {}, [], []
    for identity in identities:
        bank, losses = train_concept_prompts(
            model, processor, LABEL, scenes(identity, args.train_scenes, True),
            scenes(identity, args.train_scenes, False), num_rows=args.rows, steps=args.steps, seed=identity,
            relabel=np.random.default_rng([identity, args.seed]) if args.relabel else None,
        )
        trained[identity] = bank.prompts[0]
        test[identity] = {positive: scenes(identity, args.test_scenes, positive) for positive in (True, False)}
        first.append(losses[0])
        last.append(losses[-1])

    correct = {(reading, positive): [] for reading in READINGS for positive in (True, False)}
    for identity in identities:
        others = [other for other in identities if other != identity]
        for reading in READINGS:
            for positive in (True, False):
                for scene in test[identity][positive]:
                    if reading == READINGS[0]:
                        labels, rows = [LABEL], [trained[identity]]
                    else:
                        count = 1 if reading == READINGS[1] else 3
                        labels = concept_labels(rng, count)
                        rows = [trained[identity]] + [trained[int(k)] for k in rng.choice(others, count - 1, replace=False)]
                    bank = ConceptBank(labels, torch.stack(rows), torch.full((len(rows),), args.rows),
                                       torch.zeros(len(rows)), torch.stack(rows).mean(1),
                                       model.config.base_model_name_or_path, model.backbone_fingerprint)
                    question = RECOGNITION_QUESTION.format(name=labels[0])
                    said_yes = answer(model, processor, question, scene, bank, max_new_tokens=4).lower().startswith("yes")
                    correct[reading, positive].append(said_yes == positive)
    weighted = {}
    fitted = "under a new label each step" if args.relabel else f"under {LABEL}"
    print(f"{args.rows} rows trained per identity ({args.steps} steps on {2 * args.train_scenes} scenes, {fitted}), "
          f"{args.identities} held-out identities, {2 * args.test_scenes} new scenes each; training loss "
          f"{np.mean(first):.3f} -> {np.mean(last):.3f}")
    for reading in READINGS:
        positives, negatives = float(np.mean(correct[reading, True])), float(np.mean(correct[reading, False]))
        weighted[reading] = 0.5 * positives + 0.5 * negatives
        print(f"  read under {reading}: weighted {weighted[reading]:.3f} (positive {positives:.3f}, "
              f"negative {negatives:.3f})")
    return weighted


# --------------------------------------------------------------------------------------------- held-out identities
@dataclass
class HeldOutIdentitiesArguments:
    """`held_out_identities`: the identity protocol and held-out episodes, for each projector on the same photos."""

    projector: list[str] = field(default_factory=lambda: [str(DEFAULT_MODEL)], metadata={
        "help": "ICPT checkpoint folders"})
    backbone: str = field(default=str(DEFAULT_BACKBONE), metadata={"help": "the backbone folder (with its world.json)"})
    identities: int = field(default=60, metadata={"help": "held-out identities of the identity protocol"})
    scenes: int = field(default=5, metadata={"help": "scenes with and without each identity, each"})
    episodes: int = field(default=200, metadata={"help": "held-out recognition episodes (0: skip)"})


def identity_protocol(model, processor, tasks, identities, scenes):
    """Weighted recognition, positives, negatives and mean rows over `identities` (photos fixed per identity)."""
    correct, rows = {True: [], False: []}, []
    for identity in identities:
        label = concept_labels(np.random.default_rng([identity, 98]), 1)[0]
        rng = np.random.default_rng([identity, 99])  # the same label, photos and scenes for every projector
        question = RECOGNITION_QUESTION.format(name=label)
        references = [Image.fromarray(tasks._single(identity, rng, tasks.reference_environments)[0]) for _ in range(3)]
        bank = model.encode_concepts(**processor.prepare_references({label: references}))
        rows.append(bank.lengths[label])
        for positive in (True, False):
            for _ in range(scenes):
                scene = tasks.named_question(rng, 1, kind="recognition", positive=positive, look_alike=False,
                                             anchor=identity).images[-1]  # a named question's last image is its scene
                said_yes = answer(model, processor, question, Image.fromarray(scene), bank, max_new_tokens=4)
                correct[positive].append(said_yes.lower().startswith("yes") == positive)
    positives, negatives = float(np.mean(correct[True])), float(np.mean(correct[False]))
    return 0.5 * positives + 0.5 * negatives, positives, negatives, float(np.mean(rows))


def _fmt(scores, split):
    value = scores[split]["recognition_weighted"]["mean"]
    return "n/a" if value is None else f"{value:.3f}"  # no recognition episode of that split was drawn


def held_out_identities(args: HeldOutIdentitiesArguments) -> dict[str, dict]:
    """Prints, per projector, weighted accuracy (0.5 x positives + 0.5 x negatives) of the identity protocol and of
    the episodes, with the mean number of rows per concept; returns `{projector: {"identity_protocol", "episodes"}}`."""
    torch.set_num_threads(1)

    world = world_for(args.backbone)
    tasks = WorldTasks(world, identities="held_out", look_alike_fraction=0.0)
    held_out = world.split("held_out")
    if not 1 <= args.identities <= len(held_out):
        raise ValueError(f"--identities must lie in [1, {len(held_out)}] (the held-out split), got {args.identities}")
    identities = [int(i) for i in np.random.default_rng(4).choice(held_out, args.identities, replace=False)]
    episodes = build_episodes(world, "held_out", args.episodes, seed=1, tasks=("recognition",)) if args.episodes else None
    results = {}
    for projector in map(Path, args.projector):
        model, processor = load_model(projector, backbone=args.backbone), ICPTProcessor.from_pretrained(str(projector))
        weighted, positives, negatives, rows = identity_protocol(model, processor, tasks, identities, args.scenes)
        line = (f"{projector}: identity protocol {weighted:.3f} (positives {positives:.3f}, negatives {negatives:.3f}; "
                f"{args.identities} identities x {2 * args.scenes} scenes, {rows:.1f} rows per concept)")
        results[str(projector)] = {"identity_protocol": weighted}
        if episodes is not None:
            row = run_evaluation(episodes, checkpoints={"icpt": str(projector)}, backbone=str(args.backbone),
                                 methods={"icpt": "ICPT"}, seeds=[0], reference_counts=[], progress=False)
            scores = row["methods"]["icpt"]["results"]
            results[str(projector)]["episodes"] = scores["all"]["recognition_weighted"]["mean"]
            line += (f"; {args.episodes} episodes {_fmt(scores, 'all')} (look-alike {_fmt(scores, 'look_alike')}, "
                     f"environment set B {_fmt(scores, 'environment_shift')})")
        print(line, flush=True)
    return results


# --------------------------------------------------------------------------------------------- reference sensitivity
@dataclass
class ReferenceSensitivityArguments:
    """`reference_sensitivity`: each episode answered with the target's own photos and with another identity's."""

    projector: str = field(default=str(DEFAULT_MODEL), metadata={"help": "the ICPT checkpoint"})
    backbone: str = field(default=str(DEFAULT_BACKBONE), metadata={"help": "the backbone folder (with its world.json)"})
    episodes: int = field(default=60, metadata={"help": "held-out episodes"})
    task: str = field(default="recognition", metadata={"choices": TASKS, "help": "the episodes' question"})
    seed: int = field(default=1, metadata={"help": "episode seed (icpt demo uses its --seed + 1)"})


def reference_sensitivity(args: ReferenceSensitivityArguments) -> int:
    """Prints how many answers stay the same when the target's photos are swapped, and the score with each; returns
    that count. Recognition is scored as weighted accuracy (Yo'LLaVA protocol), attribute questions by exact match."""
    torch.set_num_threads(1)

    model, processor = load_model(args.projector, backbone=args.backbone), ICPTProcessor.from_pretrained(str(args.projector))
    episodes = build_episodes(world_for(args.backbone), "held_out", args.episodes, seed=args.seed, tasks=(args.task,))
    if len(episodes) < 2:
        raise ValueError("Need at least 2 episodes: the swapped photos come from another episode.")
    answers = {"own photos": [], "swapped photos": []}
    for index, episode in enumerate(episodes):
        references = {concept["name"]: concept["references"] for concept in episode["concepts"]}
        other = episodes[(index + 1) % len(episodes)]["concepts"][0]  # another held-out identity
        for kind in answers:
            if kind == "swapped photos":
                references[episode["target"]] = other["references"]
            bank = model.encode_concepts(**processor.prepare_references(references))
            answers[kind].append(answer(model, processor, episode["question"], episode["image"], bank, max_new_tokens=4))
    unchanged = sum(a == b for a, b in zip(*answers.values()))
    print(f"{Path(args.projector)}: {unchanged}/{len(episodes)} {args.task} answers unchanged when the target's photos are swapped")
    for kind, predictions in answers.items():
        if args.task == "recognition":
            truth = [episode["answer"] == "Yes" for episode in episodes]
            score = load_metric("recognition").compute(predictions=predictions, references=truth)["weighted_accuracy"]
            name = "weighted recognition"
        else:
            score = sum(p.strip().lower() == e["answer"].lower() for p, e in zip(predictions, episodes)) / len(episodes)
            name = "exact-match attribute accuracy"
        print(f"  {name} with {kind}: {'n/a' if score is None else f'{score:.3f}'}")
    return unchanged
