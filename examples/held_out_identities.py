"""Does a projector's rows carry identity? Recognition of held-out identities, paired across projectors.

Two measurements on held-out identities (never used in any training), the same photos for every
projector given, so that differences between projectors are not differences in what they were shown:

1. Identity protocol: for each of `--identities` held-out identities, 3 reference photos (environment
   set A) encoded under a label of the episodes' kind drawn per identity (rows tied to one label would
   read better with it: docs/default_model.md), and the recognition question about `--scenes` new
   scenes that show it and `--scenes` that do not (no look-alike twin); single concept, no other concept
   in the prompt. It isolates what the rows say about one identity.
2. Episodes (`--episodes`, 0 to skip): held-out recognition episodes of `icpt demo`'s kind (1-5 reference
   photos, up to three concepts in the prompt, look-alikes, queries in environment set B too), ICPT
   only, scored by `icpt.evaluation.harness.run_evaluation`.

    python examples/held_out_identities.py --projector icpt/default/projector icpt/default/ablations/icpt_no_identity_targets

Prints, per projector, weighted accuracy (0.5 x positives + 0.5 x negatives) of both, with the mean
number of rows per concept.
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
from icpt.world.tasks import (  # noqa: E402
    RECOGNITION_QUESTION,
    WorldTasks,
    build_episodes,
    concept_labels,
)
from icpt.world.world import world_for  # noqa: E402
from processing_icpt import ICPTProcessor  # noqa: E402


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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--projector", type=Path, nargs="+", default=[DEFAULT_MODEL], help="ICPT checkpoint folders")
    parser.add_argument("--backbone", type=Path, default=DEFAULT_BACKBONE)
    parser.add_argument("--identities", type=int, default=60, help="held-out identities of the identity protocol")
    parser.add_argument("--scenes", type=int, default=5, help="scenes with and without each identity, each")
    parser.add_argument("--episodes", type=int, default=200, help="held-out recognition episodes (0: skip)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    from icpt.evaluation.harness import run_evaluation

    world = world_for(args.backbone)
    tasks = WorldTasks(world, identities="held_out", look_alike_fraction=0.0)
    held_out = world.split("held_out")
    if not 1 <= args.identities <= len(held_out):
        parser.error(f"--identities must lie in [1, {len(held_out)}] (the held-out split), got {args.identities}")
    identities = [int(i) for i in np.random.default_rng(4).choice(held_out, args.identities, replace=False)]
    episodes = build_episodes(world, "held_out", args.episodes, seed=1, tasks=("recognition",)) if args.episodes else None
    results = {}
    for projector in args.projector:
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


if __name__ == "__main__":
    main()
