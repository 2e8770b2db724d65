"""`icpt demo`: personalize the embedded default model with three concepts it has never seen.

What it does, in order: loads the embedded default (a small LLaVA-class backbone trained on the
project's generated world, and an ICPT projector trained for it); takes three *held-out*
identities of that world (never used to train either), photographs each three times in
environment set A and encodes each as a concept, timing how long adding a concept takes; asks
recognition questions about new photos in environment set B, which no reference shows (the one
task the default backbone can do at all: its attribute, caption and other answers are not
measurable, see docs/results.md); prints the answers; saves a picture of references, queries and
answers; and prints the weighted recognition accuracy on held-out episodes of ICPT, of the
backbone with the raw reference photos in context, and of the name alone, each with its 95 %
bootstrap interval and its paired difference to ICPT (the machinery of `icpt eval`).

    icpt demo                       # the embedded default
    icpt demo --output demo.png --eval-episodes 400 --threads 1   # about a minute on a shared 2-core CPU
"""

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from icpt.evaluation.harness import run_evaluation
from icpt.evaluation.scoring import format_difference, format_value
from icpt.inference import DEFAULT_BACKBONE, DEFAULT_MODEL, answer, load_model
from icpt.world.tasks import RECOGNITION_QUESTION, build_episodes
from icpt.world.world import world_for
from processing_icpt import ICPTProcessor

from .arguments import ArgumentParser

# What the held-out score compares, with the names the demo prints.
DEMO_METHODS = {"icpt": "ICPT", "raw_references": "raw photos", "name_only": "name only"}


def compare_on_held_out(projector: Path, backbone: Path, episodes, seed: int) -> dict:
    """Weighted recognition accuracy (Yo'LLaVA protocol) with its 95 % bootstrap interval, the paired
    difference to ICPT, prompt tokens and seconds per concept of ICPT, of the backbone with the raw
    reference photos in context, and of the name alone, on the same held-out episodes
    (`icpt.evaluation.harness.run_evaluation`). `ceiling` says whether the photos in context beat chance at all."""
    results = run_evaluation(
        episodes,
        checkpoints={"icpt": str(projector)},
        backbone=str(backbone),
        methods=list(DEMO_METHODS),
        seeds=[seed],
        reference_counts=[],
        progress=True,
    )
    table = {"ceiling": results["ceiling"]["recognition"]}
    for method in DEMO_METHODS:
        row = results["methods"][method]
        if row["status"] != "ok":
            raise RuntimeError(f"The {method} measurement did not run: {row['note']}")
        table[method] = {
            "weighted": row["results"]["all"]["recognition_weighted"],
            "difference": row["difference"].get("all", {}).get("recognition_weighted"),
            "tokens": row["prompt_tokens_per_concept"]["mean"],
            "seconds": row["seconds_per_concept"]["mean"],
        }
    return table


def save_picture(rows, path: Path, cell=96):
    """One row per concept: its references, then each query photo with the question and answer under it."""
    text_height = 44
    width = max(len(r["references"]) + len(r["queries"]) for r in rows) * (cell + 8) + 8
    height = len(rows) * (cell + text_height + 12) + 8
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(rows):
        y = 8 + r * (cell + text_height + 12)
        x = 8
        for image in row["references"]:
            canvas.paste(image.resize((cell, cell), Image.NEAREST), (x, y))
            draw.text((x, y + cell + 2), f"{row['name']} ref", fill="black")
            x += cell + 8
        for image, question, answer in row["queries"]:
            canvas.paste(image.resize((cell, cell), Image.NEAREST), (x, y))
            draw.rectangle([x - 1, y - 1, x + cell, y + cell], outline="red")
            draw.text((x, y + cell + 2), question[:18], fill="gray")
            draw.text((x, y + cell + 16), answer[:18], fill="black")
            x += cell + 8
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def run(projector=DEFAULT_MODEL, backbone=DEFAULT_BACKBONE, output=Path("outputs/demo.png"), eval_episodes=400,
        seed=0):
    started = time.perf_counter()
    torch.manual_seed(seed)
    world = world_for(backbone)  # before the model: a backbone folder without its world fails at once
    print("Loading the embedded default ...", flush=True)
    model, processor = load_model(projector, backbone=backbone), ICPTProcessor.from_pretrained(str(projector))
    rng = np.random.default_rng(seed)
    held_out = world.split("held_out")
    identities = [int(i) for i in rng.choice(held_out, size=3, replace=False)]
    names = ["<ayo>", "<bix>", "<cuz>"]
    env_a, env_b = world.environment_set("A"), world.environment_set("B")

    print("Adding three concepts (held-out identities, never seen in training):")
    concepts, rows = {}, []
    for identity, name in zip(identities, names):
        references = [world.render([identity], env_a[int(rng.integers(len(env_a)))], rng)[0] for _ in range(3)]
        begin = time.perf_counter()
        bank = model.encode_concepts(**processor.prepare_references({name: references}))
        seconds = time.perf_counter() - begin
        concepts[name] = bank
        print(f"  {name}: {world.identities[identity].description}  -> {bank.lengths[name]} prompt tokens, "
              f"added in {seconds * 1000:.0f} ms")
        rows.append({"name": name, "identity": identity, "references": references, "queries": []})
    bank = concepts[names[0]].merge(concepts[names[1]]).merge(concepts[names[2]])

    print("\nRecognition questions about new photos (environment set B: backgrounds no reference showed):")
    for row in tqdm(rows, desc="asking", leave=False):
        name, identity = row["name"], row["identity"]
        other = int(rng.choice([i for i in held_out if i not in identities]))
        with_it = world.render([identity, other], env_b[int(rng.integers(len(env_b)))], rng)[0]
        without_it = world.render([other], env_b[int(rng.integers(len(env_b)))], rng)[0]
        questions = [
            (with_it, RECOGNITION_QUESTION.format(name=name)),
            (without_it, RECOGNITION_QUESTION.format(name=name)),
        ]
        for image, question in questions:
            reply = answer(model, processor, question, image, bank, max_new_tokens=4)
            row["queries"].append((image, question, reply))
            print(f"  [{name} {'in' if image is with_it else 'not in'} photo] {question}\n      -> {reply}")
    save_picture(rows, Path(output))
    print(f"\nSaved a picture of the references, photos and answers to {output}")

    episodes = build_episodes(world, "held_out", eval_episodes, seed=seed + 1, tasks=("recognition",))
    print(f"\nScoring {len(episodes)} held-out recognition episodes (ICPT, raw photos in context, name only) ...",
          flush=True)
    scores = compare_on_held_out(Path(projector), Path(backbone), episodes, seed)
    ceiling = scores["ceiling"]
    print(f"\nHeld-out recognition ({len(episodes)} episodes, Yo'LLaVA protocol: 0.5 x positives + 0.5 x negatives; "
          "mean [95 % bootstrap interval over episodes]; difference to ICPT on the same questions, paired "
          "permutation test):")
    if not ceiling["measurable"]:
        print(f"  not measurable on this backbone: the photos in context score {format_value(ceiling['value'])}, "
              "no better than chance (0.5) by the bar of `icpt eval`")
    print(f"  {'method':<12}{'weighted':>24}{'difference to ICPT':>36}{'tokens/concept':>16}{'s to add':>10}")
    for method, name in DEMO_METHODS.items():
        row = scores[method]
        difference = "(reference)" if method == "icpt" else format_difference(row["difference"])
        tokens = "n/a" if row["tokens"] is None else f"{row['tokens']:.1f}"
        seconds = "n/a" if row["seconds"] is None else f"{row['seconds']:.4f}"
        print(f"  {name:<12}{format_value(row['weighted']):>24}{difference:>36}{tokens:>16}{seconds:>10}")
    print(f"Demo took {time.perf_counter() - started:.0f} s")
    return scores


@dataclass
class DemoArguments:
    projector: str = field(default=str(DEFAULT_MODEL), metadata={"help": "ICPT checkpoint folder."})
    backbone: str = field(default=str(DEFAULT_BACKBONE), metadata={"help": "Backbone folder (with world.json)."})
    output: str = field(default="outputs/demo.png", metadata={"help": "Where to save the picture."})
    eval_episodes: int = field(default=400, metadata={"help": "Held-out recognition episodes to score."})
    seed: int = field(default=0, metadata={"help": "Seed of the identities, photos and episodes."})
    threads: int | None = field(default=None, metadata={
        "help": "CPU threads for torch (on a shared machine, 1 avoids spinning threads)"})


def main(argv=None) -> int:
    (args,) = ArgumentParser(DemoArguments, prog="icpt demo", description=__doc__.split("\n\n")[0]).parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    run(args.projector, args.backbone, args.output, args.eval_episodes, args.seed)
    return 0
