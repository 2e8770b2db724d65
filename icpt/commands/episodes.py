"""`icpt episodes`: training episodes from your own photos (a folder per concept) or a `datasets` dataset.

    icpt episodes --photos my_photos --output my_episodes --num_episodes 2000
    icpt episodes --dataset my_dataset --image_column image --label_column label --output my_episodes

Writes OUTPUT/train and OUTPUT/eval (concepts held out for the evaluation during training); see
`icpt.data.user_episodes` for what an episode asks.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from datasets import load_dataset, load_from_disk

from icpt.data.user_episodes import concepts_from_dataset, concepts_from_folder, episodes_from_concepts
from modeling_icpt.atomic_save import atomic_destination
from modeling_icpt.input_checks import ICPTInputError

from .arguments import ArgumentParser

logger = logging.getLogger(__name__)


@dataclass
class EpisodeArguments:
    output: str = field(metadata={"help": "Folder to write: OUTPUT/train and OUTPUT/eval (Dataset.save_to_disk)."})
    photos: str | None = field(default=None, metadata={"help": "A folder with one sub-folder of photos per concept (optional masks/ and captions/ beside the photos)."})
    dataset: str | None = field(default=None, metadata={"help": "A datasets dataset: a save_to_disk folder or a Hub id."})
    dataset_split: str = field(default="train", metadata={"help": "The split of a Hub --dataset."})
    image_column: str = field(default="image", metadata={"help": "The --dataset column with the photos."})
    label_column: str = field(default="label", metadata={"help": "The --dataset column with the identity of each photo."})
    num_episodes: int = field(default=1000, metadata={"help": "Training episodes."})
    eval_episodes: int | None = field(default=None, metadata={"help": "Held-out episodes (default: a quarter of --num_episodes)."})
    eval_fraction: float = field(default=0.2, metadata={"help": "Share of the concepts held out for evaluation (0: none)."})
    num_references: int = field(default=3, metadata={"help": "Most reference photos per concept and episode."})
    seed: int = field(default=0, metadata={"help": "Seed of the draw."})
    overwrite: bool = field(default=False, metadata={"help": "Replace --output if it exists."})


def main(argv=None) -> int:
    (args,) = ArgumentParser(EpisodeArguments, prog="icpt episodes", description=__doc__.split("\n\n")[0]).parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if (args.photos is None) == (args.dataset is None):
        raise ICPTInputError("Give --photos DIR (a folder per concept) or --dataset NAME_OR_DIR, not both or neither.")
    output = Path(args.output)
    if output.exists() and not args.overwrite:
        raise ICPTInputError(f"{output} exists: pass --overwrite to replace it, or choose another --output.")
    if args.photos is not None:
        concepts = concepts_from_folder(args.photos)
    else:
        concepts = concepts_from_dataset(_load_dataset(args.dataset, args.dataset_split), args.image_column,
                                         args.label_column)
    splits = episodes_from_concepts(concepts, args.num_episodes, args.eval_fraction, args.eval_episodes,
                                    args.num_references, args.seed)
    if output.exists():  # --overwrite: the new episodes replace the old ones, not mix with them
        shutil.rmtree(output)
    with atomic_destination(output, directory=True) as temporary:  # a complete folder or none
        for split, dataset in splits.items():
            dataset.save_to_disk(str(Path(temporary) / split))
    logger.info("Wrote %s: %s", output, ", ".join(f"{split} {len(d)} episodes" for split, d in splits.items()))
    return 0


def _load_dataset(name: str, split: str):
    if Path(name).is_dir():
        dataset = load_from_disk(name)
        return dataset[split] if hasattr(dataset, "keys") else dataset
    if Path(name).exists() or name.startswith((".", "/")):
        raise ICPTInputError(f"--dataset {name} is not a dataset folder: give a folder written by save_to_disk or a Hub id.")
    return load_dataset(name, split=split)
