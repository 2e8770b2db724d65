"""Do a projector's answers depend on the concept's photos? A check on held-out episodes.

Each recognition or attribute episode is answered twice by the same projector: with the target concept encoded from its own
reference photos, and with the target encoded from the photos of another episode's concept (a
different held-out identity). A projector that personalizes changes many answers and loses accuracy
when the photos are swapped; one that ignores the photos answers the same both times.

    python examples/reference_sensitivity.py --episodes 60
    python examples/reference_sensitivity.py --projector icpt/default/ablations/icpt_no_identity_targets
    python examples/reference_sensitivity.py --task attribute   # "What colour is <bo>?" and the like

Recognition is scored as weighted accuracy (Yo'LLaVA protocol), attribute questions by exact match.
"""

import argparse
import sys
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(REPO_ROOT))

from icpt.inference import DEFAULT_BACKBONE, DEFAULT_MODEL, answer, load_model  # noqa: E402
from icpt.metrics import load_metric  # noqa: E402
from icpt.world.tasks import build_episodes  # noqa: E402
from icpt.world.world import world_for  # noqa: E402
from processing_icpt import ICPTProcessor  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--projector", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--backbone", type=Path, default=DEFAULT_BACKBONE)
    parser.add_argument("--episodes", type=int, default=60, help="held-out episodes")
    parser.add_argument("--task", choices=("recognition", "attribute"), default="recognition")
    parser.add_argument("--seed", type=int, default=1, help="episode seed (icpt demo uses its --seed + 1)")
    args = parser.parse_args(argv)
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
    print(f"{args.projector}: {unchanged}/{len(episodes)} {args.task} answers unchanged when the target's photos are swapped")
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


if __name__ == "__main__":
    main()
