"""The exported backbone's model card (README.md): how it was trained and what was measured."""

from __future__ import annotations

from icpt.episodes import TASKS
from icpt.world.tasks import COMPARE_QUESTION


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
        f"({state['comparison_step']} steps, tower frozen"
        + (f"; connector and language model started from `{state['language_model_from']}`"
           if state.get("language_model_from") else "")
        + "), then the whole model on named questions "
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
            f"{args.format_tower_lr}"
            + (
                f"; the first {args.copy_steps} text-only label copying: lists of labels written back, and the label a "
                "description was given"
                if args.copy_steps
                else ""
            )
            + "): on half of the other question steps ICPT episodes "
            + (
                "of every task (recognition, presence, attribute, caption, either/or and VQA)"
                if sorted(args.format_tasks) == sorted(TASKS)
                else "drawn from " + ", ".join(args.format_tasks)
            )
            + " asked with the named concepts' photos in context under "
            'their labels ("<w12> is <image> <image>.", training identities only), on the rest stage 3\'s tasks; '
            "the only stage with concept labels, and never an ICPT prompt."
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
