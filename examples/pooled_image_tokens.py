"""How many prompt rows does a concept need? A training-free reference point on the embedded default.

Each concept's rows are the backbone's own image tokens of its reference photos (what the language
model reads for a photo), averaged over the references and pooled over the square patch grid to the
`--rows` asked for (the grid's own size keeps every token). They go where ICPT's rows go
("<bo> is <icpt>...<icpt>."), and the frozen backbone answers held-out recognition episodes -- the episodes `icpt demo` scores. No projector is involved:
this measures what the language model can read from that many rows of photo content.

    python examples/pooled_image_tokens.py --episodes 60 --rows 1 4 16 64
    python examples/pooled_image_tokens.py --task attribute --rows 4

Prints, per number of rows, weighted recognition accuracy (Yo'LLaVA protocol) or, with
`--task attribute`, exact-match accuracy on attribute questions ("What colour is <bo>?").
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(REPO_ROOT))

from icpt.cli import answer  # noqa: E402
from icpt.demo import DEFAULT_BACKBONE, DEFAULT_PROJECTOR, load_default, world_for  # noqa: E402
from icpt.metrics import load_metric  # noqa: E402
from icpt.world_tasks import build_episodes  # noqa: E402
from modeling_icpt import ConceptBank  # noqa: E402


def image_tokens(model, processor, photos) -> torch.Tensor:
    """`(num_photos, tokens, d_lm)`: what the language model receives in place of each photo."""
    messages = [[{"role": "user", "content": [{"type": "image"}]}] for _ in photos]
    return torch.stack(model.image_token_embeddings(**processor(messages=messages, images=[[photo] for photo in photos])))


def pooled_rows(tokens: torch.Tensor, rows: int) -> torch.Tensor:
    """Average over the photos, then average-pool the square patch grid to `rows` cells."""
    side = int(round(tokens.shape[1] ** 0.5))
    grid = tokens.mean(0).reshape(side, side, -1).permute(2, 0, 1)  # (d, side, side)
    cells = int(round(rows**0.5))
    return torch.nn.functional.adaptive_avg_pool2d(grid, cells).flatten(1).T  # (rows, d)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=60, help="held-out episodes")
    parser.add_argument("--task", choices=("recognition", "attribute"), default="recognition")
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 4, 16], help="rows per concept (squares)")
    parser.add_argument("--seed", type=int, default=1, help="episode seed (icpt demo uses its --seed + 1)")
    parser.add_argument("--projector", type=Path, default=DEFAULT_PROJECTOR, help="supplies the injection only")
    parser.add_argument("--backbone", type=Path, default=DEFAULT_BACKBONE)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    # the projector's checkpoint only supplies the injection; every row below replaces its output
    model, processor = load_default(args.projector, args.backbone)
    world = world_for(args.backbone)
    episodes = build_episodes(world, "held_out", args.episodes, seed=args.seed, tasks=(args.task,))
    metric = load_metric("recognition")
    tokens = {}
    for rows in args.rows:
        predictions, references = [], []
        for episode in episodes:
            names, prompts = [], []
            for concept in episode["concepts"]:
                key = (episode["question"], concept["name"])
                if key not in tokens:
                    tokens[key] = image_tokens(model, processor, concept["references"])
                names.append(concept["name"])
                prompts.append(pooled_rows(tokens[key], rows))
            prompts = torch.stack(prompts)
            bank = ConceptBank(names, prompts, torch.full((len(names),), rows), torch.zeros(len(names)), prompts.mean(1))
            predictions.append(answer(model, processor, episode["question"], episode["image"], bank, max_new_tokens=6))
            references.append(episode["answer"])
        if args.task == "attribute":
            exact = sum(p.strip().lower() == r.lower() for p, r in zip(predictions, references)) / len(episodes)
            print(f"{rows:>3} pooled rows per concept: exact-match attribute accuracy {exact:.3f}, "
                  f"{len(episodes)} held-out episodes (e.g. {predictions[0]!r} for {references[0]!r})")
            continue
        scores = metric.compute(predictions=predictions, references=[r == "Yes" for r in references])
        shown = {k: "n/a" if scores[k] is None else f"{scores[k]:.3f}"  # n/a: no episode of that kind
                 for k in ("weighted_accuracy", "positive_accuracy", "negative_accuracy")}
        print(f"{rows:>3} pooled rows per concept: weighted {shown['weighted_accuracy']} "
              f"(positive {shown['positive_accuracy']}, negative {shown['negative_accuracy']}), "
              f"{len(episodes)} held-out episodes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
