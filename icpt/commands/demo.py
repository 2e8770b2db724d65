"""`icpt demo`: personalize the embedded default model with three concepts it has never seen.

What it does, in order: loads the embedded default (a small LLaVA-class backbone trained on the
project's generated world, and an ICPT projector trained for it); takes three *held-out*
identities of that world (never used to train either), photographs each three times in
environment set A and encodes each as a concept, timing how long adding a concept takes; asks
recognition questions about new photos in environment set B, which no reference shows; asks for a
caption of a photo with two of them, where one of them stands, and an either/or question about one's
colour (an either/or answer is the option the model finds more likely, `icpt.inference.choose`, shown beside the
words it generates); prints the answers beside the truth; saves a picture of references, queries and answers; and
prints, on held-out episodes, the weighted recognition accuracy, the either/or accuracy (text and
visual questions) and the caption's name accuracy of ICPT, of the backbone with the raw reference photos
in context, and of the name alone, each with its 95 % bootstrap interval and its paired difference to
ICPT (the machinery of `icpt eval`; a task the photos in context do not beat by a margin what an answer that
looks at no photo scores — chance, or for captions the better of naming every concept asked and naming none — is
reported as not measurable on the backbone).

    icpt demo                       # the embedded default
    icpt demo --output demo.png --eval-episodes 400 --task-episodes 40 --threads 1   # a few minutes here
"""

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from datasets import concatenate_datasets
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from icpt.evaluation.harness import run_evaluation
from icpt.evaluation.scoring import format_difference, format_value
from icpt.inference import DEFAULT_BACKBONE, DEFAULT_MODEL, answer, choose, load_model
from icpt.world.tasks import (
    CAPTION_QUESTION,
    RECOGNITION_QUESTION,
    TEXT_QA_QUESTIONS,
    VQA_POSITION_QUESTION,
    build_episodes,
)
from icpt.world.world import COLOURS, world_for
from processing_icpt import ICPTProcessor

from .arguments import ArgumentParser

# What the held-out score compares, with the names the demo prints.
DEMO_METHODS = {"icpt": "ICPT", "raw_references": "raw photos", "name_only": "name only"}
# The held-out numbers the demo prints, as (column title, task, metric of `icpt.evaluation.scoring`).
DEMO_COLUMNS = (("recognition", "recognition", "recognition_weighted"), ("either/or text", "text_qa", "text_qa"),
                ("either/or photo", "vqa", "vqa"), ("caption names", "caption", "caption_names"))


def compare_on_held_out(projector: Path, backbone: Path, episodes, seed: int) -> dict:
    """Each metric of `DEMO_COLUMNS` with its 95 % bootstrap interval and paired difference to ICPT, and
    prompt tokens and seconds per concept, of ICPT, of the backbone with the raw reference photos in
    context, and of the name alone, on the same held-out episodes (`icpt.evaluation.harness.run_evaluation`).
    `ceiling[task]` says whether the photos in context beat chance on the task at all."""
    results = run_evaluation(
        episodes,
        checkpoints={"icpt": str(projector)},
        backbone=str(backbone),
        methods=list(DEMO_METHODS),
        seeds=[seed],
        reference_counts=[],
        progress=True,
    )
    table = {"ceiling": results["ceiling"]}
    for method in DEMO_METHODS:
        row = results["methods"][method]
        if row["status"] != "ok":
            raise RuntimeError(f"The {method} measurement did not run: {row['note']}")
        table[method] = {
            "values": {metric: row["results"]["all"][metric] for _, _, metric in DEMO_COLUMNS},
            "differences": {metric: row["difference"].get("all", {}).get(metric) for _, _, metric in DEMO_COLUMNS},
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
        seed=0, task_episodes=40):
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

    print("\nBeyond yes and no (a new photo of two of them, environment set B; the truth in brackets):")
    first, second = rows[0], rows[1]
    scene, masks = world.render([first["identity"], second["identity"]], env_b[int(rng.integers(len(env_b)))], rng)
    left_to_right = sorted((first, second), key=lambda row: np.nonzero(masks[row["identity"]].any(axis=0))[0].mean())
    colour = world.identities[first["identity"]].colour
    options = [colour, str(rng.choice([c for c in COLOURS if c != colour]))]
    options = [options[i] for i in rng.permutation(2)]
    # either/or questions offer their options: the answer is the one the model finds more likely (what the
    # evaluation scores), shown beside the words it generates
    asked = [
        (scene, CAPTION_QUESTION.format(names=", ".join(names)), None,
         f"a photo of {left_to_right[0]['name']} and {left_to_right[1]['name']}, from left to right."),
        (scene, VQA_POSITION_QUESTION.format(name=first["name"]), ["on the left", "on the right"],
         "on the left" if left_to_right[0] is first else "on the right"),
        (None, TEXT_QA_QUESTIONS["colour"].format(name=first["name"], first=options[0], second=options[1]), options,
         colour),
    ]
    scene_row = {"name": "new", "identity": None, "references": [], "queries": []}
    for image, question, offered, truth in asked:
        reply = answer(model, processor, question, image, bank, max_new_tokens=32)
        if offered is None:
            print(f"  {question}\n      -> {reply}   [{truth}]")
        else:
            generated, reply = reply, choose(model, processor, question, offered, image, bank)
            print(f"  {question}\n      -> the more likely option: {reply} (generated: {generated!r})   [{truth}]")
        if image is not None:
            scene_row["queries"].append((image, question, reply))
    save_picture(rows + [scene_row], Path(output))
    print(f"\nSaved a picture of the references, photos and answers to {output}")

    episodes = concatenate_datasets([
        build_episodes(world, "held_out", eval_episodes, seed=seed + 1, tasks=("recognition",)),
        build_episodes(world, "held_out", 3 * task_episodes, seed=seed + 2, tasks=("text_qa", "vqa", "caption")),
    ])
    print(f"\nScoring {len(episodes)} held-out episodes ({eval_episodes} recognition, {task_episodes} of each other "
          "task) with ICPT, the raw photos in context and the name alone ...", flush=True)
    scores = compare_on_held_out(Path(projector), Path(backbone), episodes, seed)
    print(f"\nHeld-out identities (recognition: Yo'LLaVA protocol, 0.5 x positives + 0.5 x negatives; either/or: "
          "share of questions where the right option is the more likely one, chance 0.5; caption names: per concept "
          "the question names, whether the caption names it exactly when it is in the photo, chance about 0.5; "
          "mean [95 % bootstrap interval over "
          "episodes], below it the difference to ICPT on the same questions with its paired permutation test):")
    for title, task, metric in DEMO_COLUMNS:
        ceiling = scores["ceiling"][task]
        print(f"  {title}" + ("" if ceiling["measurable"] else
                              f": not measurable on this backbone (the photos in context score "
                              f"{format_value(ceiling['value'])}, not above what an answer that looks at no photo "
                              f"scores, {ceiling['chance']:.2f}, by the bar of `icpt eval`)"))
        if not ceiling["measurable"]:
            continue
        for method, name in DEMO_METHODS.items():
            row = scores[method]
            difference = "(reference)" if method == "icpt" else format_difference(row["differences"][metric])
            print(f"    {name:<12}{format_value(row['values'][metric]):>24}   {difference}")
    print(f"  {'method':<12}{'tokens/concept':>16}{'s to add':>10}")
    for method, name in DEMO_METHODS.items():
        row = scores[method]
        tokens = "n/a" if row["tokens"] is None else f"{row['tokens']:.1f}"
        seconds = "n/a" if row["seconds"] is None else f"{row['seconds']:.4f}"
        print(f"  {name:<12}{tokens:>16}{seconds:>10}")
    print(f"Demo took {time.perf_counter() - started:.0f} s")
    return scores


@dataclass
class DemoArguments:
    projector: str = field(default=str(DEFAULT_MODEL), metadata={"help": "ICPT checkpoint folder."})
    backbone: str = field(default=str(DEFAULT_BACKBONE), metadata={"help": "Backbone folder (with world.json)."})
    output: str = field(default="outputs/demo.png", metadata={"help": "Where to save the picture."})
    eval_episodes: int = field(default=400, metadata={"help": "Held-out recognition episodes to score."})
    task_episodes: int = field(default=40, metadata={
        "help": "Held-out episodes of each other task scored (either/or text and photo, caption)."})
    seed: int = field(default=0, metadata={"help": "Seed of the identities, photos and episodes."})
    threads: int | None = field(default=None, metadata={
        "help": "CPU threads for torch (on a shared machine, 1 avoids spinning threads)"})


def main(argv=None) -> int:
    (args,) = ArgumentParser(DemoArguments, prog="icpt demo", description=__doc__.split("\n\n")[0]).parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    run(args.projector, args.backbone, args.output, args.eval_episodes, args.seed, args.task_episodes)
    return 0
