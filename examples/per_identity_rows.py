"""Can the frozen language model read a concept from a few prompt rows at all? A per-identity ceiling.

For each of a few held-out identities, `--rows` free rows are trained for that identity alone
(`train_concept_prompts`, the test-time-training routine, backbone frozen) on labelled query scenes:
scenes that show the identity ("Yes") and scenes that do not ("No", never its look-alike twin). They
are then asked the recognition question about new scenes of the same kinds. Nothing is amortized: if
these rows are read as the identity, the language model can take a concept from that many rows, and
a projector that cannot is failing to learn, not hitting a limit of the backbone.

Rows are read back three ways: under the label they were fitted under, alone; under another label,
alone; and under another label beside two other concepts (the other identities' rows, under their own
labels), as in an episode. With `--relabel` every training step asks under a new label
(`train_concept_prompts(..., relabel=...)`, how identity targets are fitted), so the rows cannot lean on
one label.

    python examples/per_identity_rows.py --rows 8 --identities 8
    python examples/per_identity_rows.py --rows 8 --steps 60 --identities 8 --relabel
    python examples/per_identity_rows.py --rows 32 --steps 40

Prints weighted accuracy on the new scenes (0.5 x positives + 0.5 x negatives) of each reading and the
training loss before the first and after the last step, averaged over the identities.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(REPO_ROOT))

from icpt.inference import DEFAULT_BACKBONE, DEFAULT_MODEL, answer, load_model  # noqa: E402
from icpt.training.prompt_fitting import train_concept_prompts  # noqa: E402
from icpt.world.tasks import RECOGNITION_QUESTION, WorldTasks, concept_labels  # noqa: E402
from icpt.world.world import world_for  # noqa: E402
from modeling_icpt import ConceptBank  # noqa: E402
from processing_icpt import ICPTProcessor  # noqa: E402

LABEL = "<w1>"
READINGS = ("its own label, alone", "another label, alone", "another label, beside two other concepts")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=8, help="prompt rows per identity")
    parser.add_argument("--steps", type=int, default=40, help="full-batch Adam steps per identity")
    parser.add_argument("--identities", type=int, default=8, help="held-out identities to try")
    parser.add_argument("--train-scenes", type=int, default=24, help="scenes with and without the identity, each")
    parser.add_argument("--test-scenes", type=int, default=10, help="new scenes with and without it, each")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--relabel", action="store_true",
                        help="fit under a new label at every step (as identity targets are fitted)")
    parser.add_argument("--projector", type=Path, default=DEFAULT_MODEL, help="supplies the injection only")
    parser.add_argument("--backbone", type=Path, default=DEFAULT_BACKBONE)
    args = parser.parse_args(argv)
    if args.identities < 3:
        parser.error("--identities must be at least 3: a reading beside two other concepts uses two other identities' rows")
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


if __name__ == "__main__":
    main()
