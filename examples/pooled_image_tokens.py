"""How many prompt rows does a concept need? A training-free reference point on the embedded default.

Each concept's rows are the backbone's own image tokens of its reference photos (what the language
model reads for a photo), pooled over the square patch grid to the `--rows` asked for (the grid's own
size keeps every token): averaged over the references first (`--layout mean`), or pooled photo by
photo and concatenated (`--layout per-reference`: rows x references rows per concept). They go where
ICPT's rows go ("<bo> is <icpt>...<icpt>."), and the frozen backbone answers held-out recognition
episodes -- the episodes `icpt demo` scores. No projector is involved: this measures what the language
model can read from that many rows of photo content.

    python examples/pooled_image_tokens.py --episodes 60 --rows 1 4 16 64
    python examples/pooled_image_tokens.py --task attribute --rows 4
    python examples/pooled_image_tokens.py --episodes 150 --layout per-reference --target-only --skip-look-alikes

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

from icpt.inference import DEFAULT_BACKBONE, DEFAULT_MODEL, answer, load_model  # noqa: E402
from icpt.metrics import load_metric  # noqa: E402
from icpt.world.tasks import build_episodes  # noqa: E402
from icpt.world.world import world_for  # noqa: E402
from modeling_icpt import ConceptBank  # noqa: E402
from processing_icpt import ICPTProcessor  # noqa: E402


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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=60, help="held-out episodes")
    parser.add_argument("--task", choices=("recognition", "attribute"), default="recognition")
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 4, 16], help="rows per concept, or per photo with --layout per-reference (squares)")
    parser.add_argument("--layout", choices=("mean", "per-reference"), default="mean",
                        help="average the photos before pooling, or pool each photo and concatenate")
    parser.add_argument("--target-only", action="store_true",
                        help="the preamble holds only the concept the question asks about (not every concept)")
    parser.add_argument("--skip-look-alikes", action="store_true",
                        help="leave out episodes whose scene holds the target's look-alike twin")
    parser.add_argument("--seed", type=int, default=1, help="episode seed (icpt demo uses its --seed + 1)")
    parser.add_argument("--projector", type=Path, default=DEFAULT_MODEL, help="supplies the injection only")
    parser.add_argument("--backbone", type=Path, default=DEFAULT_BACKBONE)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    # the projector's checkpoint only supplies the injection; every row below replaces its output
    model, processor = load_model(args.projector, backbone=args.backbone), ICPTProcessor.from_pretrained(str(args.projector))
    world = world_for(args.backbone)
    episodes = build_episodes(world, "held_out", args.episodes, seed=args.seed, tasks=(args.task,))
    if args.skip_look_alikes:
        episodes = [episode for episode in episodes if "look_alike" not in episode["tags"]]
    if not episodes:
        raise SystemExit("Every drawn episode has a look-alike in its scene: draw more with --episodes.")
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


if __name__ == "__main__":
    raise SystemExit(main())
