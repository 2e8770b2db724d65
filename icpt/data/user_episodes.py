"""Training episodes from your own photos (the library of `icpt episodes`).

A projector (and its reader adapter) trains on episodes: a question about a photo, asked with the reference
photos of the concepts it names (`icpt.episodes.EPISODE_FEATURES`, the schema the generated world writes).
This module builds them from a user's data, in one of two forms:

- a folder with one sub-folder of photos per concept (the layout `icpt encode` reads), optionally with
  masks and captions beside them:

      photos/bo/1.jpg, photos/bo/2.jpg, ...       the photos of <bo>
      photos/bo/masks/1.png                       optional: the mask of 1.jpg (white = the concept)
      photos/bo/captions/1.txt                    optional: a caption of 1.jpg that names <bo>

- any `datasets` dataset with an image column and an identity column (`--dataset`, `--image_column`,
  `--label_column`): a folder written by `save_to_disk`, or a Hub dataset id.

Concepts are split by identity into training and held-out ones (`--eval_fraction`), so the evaluation
during training (`icpt train --eval_episodes DIR/eval`) asks about concepts the projector never saw.
Episodes are recognition questions, half of them about a photo of another concept ("No"), and with
captions, caption requests. Each episode's references are photos of the concept other than the query.

    icpt episodes --photos my_photos --output my_episodes --num_episodes 2000
    icpt train --backbone llava-hf/llava-1.5-7b-hf --episodes my_episodes/train \\
        --eval_episodes my_episodes/eval --eval_strategy steps --eval_steps 200 --output_dir outputs/projector

Example:

```python
>>> from icpt.data.user_episodes import episodes_from_concepts
>>> splits = episodes_from_concepts({"<bo>": bo_photos, "<kiki>": kiki_photos, "<mia>": mia_photos},
...                                 num_episodes=30, eval_fraction=0.34)  # doctest: +SKIP
>>> splits["train"][0]["question"]  # doctest: +SKIP
'Can you see <bo> in this photo? Answer with a single word or phrase.'
```
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from datasets import Dataset
from tqdm.auto import tqdm

from icpt.episodes import EPISODE_FEATURES
from icpt.world.tasks import CAPTION_QUESTION, RECOGNITION_QUESTION
from modeling_icpt.input_checks import LABEL_PATTERN, ICPTInputError
from processing_icpt import load_image

from .folders import concept_folders


@dataclass
class Concept:
    """One concept's photos (PIL images, or paths opened on use), with optional masks and captions per photo."""

    label: str
    photos: list
    masks: list = field(default_factory=list)  # one per photo, or empty
    captions: list = field(default_factory=list)  # one per photo (None where a photo has none), or empty


def concepts_from_folder(folder: str | Path) -> dict[str, Concept]:
    """`{label: Concept}` from a folder with one sub-folder of photos per concept (see the module docstring)."""
    concepts = {}
    for label, photos in concept_folders(folder).items():
        masks = [photo.parent / "masks" / f"{photo.stem}.png" for photo in photos]
        if any(mask.is_file() for mask in masks):
            missing = [str(m) for m in masks if not m.is_file()]
            if missing:
                raise ICPTInputError(f"{label} has masks for some photos but not for {missing[:3]}: give every photo "
                                     "of a concept a mask (masks/<photo name>.png) or none.")
        else:
            masks = []
        captions = [photo.parent / "captions" / f"{photo.stem}.txt" for photo in photos]
        captions = [path.read_text().strip() if path.is_file() else None for path in captions]
        for path, caption in zip(photos, captions):
            if caption is not None and label not in caption and label.strip("<>") not in caption:
                raise ICPTInputError(f"The caption of {path} does not name {label}: write the concept into it "
                                     f"(e.g. '{label} sleeps on the sofa.').")
        concepts[label] = Concept(label, photos, masks, captions if any(c is not None for c in captions) else [])
    return concepts


def concepts_from_dataset(dataset, image_column: str = "image", label_column: str = "label") -> dict[str, Concept]:
    """`{label: Concept}` from a `datasets.Dataset` with an image column and an identity column.

    A `ClassLabel` column gives its names; other values are used as written. A name becomes a label by
    putting it in angle brackets, with its spaces as underscores ("golden retriever" -> <golden_retriever>).
    """
    for column in (image_column, label_column):
        if column not in dataset.column_names:
            raise ICPTInputError(f"The dataset has no column {column!r} (its columns: {dataset.column_names}): pass "
                                 "--image_column and --label_column.")
    feature = dataset.features[label_column]
    names = getattr(feature, "names", None)
    grouped: dict[str, list] = {}
    for value, image in zip(dataset[label_column], dataset[image_column]):
        name = names[value] if names is not None else str(value)
        grouped.setdefault(_as_label(name), []).append(image)
    return {label: Concept(label, photos) for label, photos in sorted(grouped.items())}


def _as_label(name: str) -> str:
    label = "<" + re.sub(r"\s+", "_", name.strip().strip("<>")) + ">"
    if not LABEL_PATTERN.fullmatch(label):
        raise ICPTInputError(f"The identity {name!r} cannot be a label: labels are written <name> without spaces or "
                             "angle brackets inside.")
    return label


def episodes_from_concepts(concepts: dict[str, Concept] | dict[str, list], num_episodes: int = 1000,
                           eval_fraction: float = 0.2, eval_episodes: int | None = None, num_references: int = 3,
                           seed: int = 0, progress: bool = True) -> dict:
    """`{"train": Dataset, "eval": Dataset}` of episodes (`EPISODE_FEATURES`), split by concept (no "eval" when
    `eval_fraction` is 0).

    Args:
        concepts: `{label: Concept}` or `{label: [photos]}`; every concept needs at least 2 photos (a query and
            a reference).
        num_episodes: training episodes; `eval_episodes` held-out ones (default: a quarter as many).
        eval_fraction: the share of concepts held out for evaluation (at least 2 concepts when > 0, so a
            held-out question can be about another concept's photo); 0 gives no eval split.
        num_references: at most this many reference photos per concept and episode.
        seed: the draw of concepts, photos and answers.
    """
    concepts = {label: c if isinstance(c, Concept) else Concept(label, list(c)) for label, c in concepts.items()}
    few = [label for label, concept in concepts.items() if len(concept.photos) < 2]
    if few:
        raise ICPTInputError(f"{few[:5]} have fewer than 2 photos: each concept needs a query photo and at least one "
                             "reference photo.")
    labels = sorted(concepts)
    rng = np.random.default_rng(seed)
    num_eval = int(round(eval_fraction * len(labels))) if eval_fraction > 0 else 0
    num_eval = max(num_eval, 2) if eval_fraction > 0 else 0
    if len(labels) - num_eval < 2:
        raise ICPTInputError(f"{len(labels)} concepts are too few to hold out {num_eval} for evaluation and train on "
                             "at least 2: add concepts or lower --eval_fraction (0: no held-out split).")
    held_out = set(rng.choice(labels, size=num_eval, replace=False).tolist()) if num_eval else set()
    split_labels = {"train": [l for l in labels if l not in held_out], "eval": [l for l in labels if l in held_out]}
    counts = {"train": num_episodes, "eval": (eval_episodes if eval_episodes is not None else max(num_episodes // 4, 1))
              if held_out else 0}
    splits = {}
    bar = tqdm(total=sum(counts.values()), desc="icpt episodes", unit="episode", disable=not progress)
    for split, chosen in split_labels.items():
        if not counts[split]:
            continue
        rows = []
        for index in range(counts[split]):
            rows.append(_episode({label: concepts[label] for label in chosen}, chosen[index % len(chosen)], rng,
                                 num_references))
            bar.update(1)
        splits[split] = Dataset.from_list(rows, features=EPISODE_FEATURES)
    bar.close()
    return splits


def _episode(concepts: dict[str, Concept], label: str, rng: np.random.Generator, num_references: int) -> dict:
    """One episode about `label`: a caption request on a captioned photo, else a recognition question."""
    concept = concepts[label]
    order = [int(i) for i in rng.permutation(len(concept.photos))]
    query, references = order[0], order[1:1 + num_references]
    captioned = [i for i in order if concept.captions and concept.captions[i] is not None]
    if captioned and rng.random() < 0.5:  # captions where they exist: half the episodes of their concept
        query = captioned[0]
        references = [i for i in order if i != query][:num_references]
        question, answer, image, present = CAPTION_QUESTION.format(names=label), concept.captions[query], \
            concept.photos[query], [label]
        task = "caption"
    elif rng.random() < 0.5 or len(concepts) < 2:
        question, answer, image, present, task = RECOGNITION_QUESTION.format(name=label), "Yes", concept.photos[query], \
            [label], "recognition"
    else:  # a photo of another concept: the answer is no
        other = concepts[str(rng.choice([l for l in concepts if l != label]))]
        image = other.photos[int(rng.integers(len(other.photos)))]
        question, answer, present, task = RECOGNITION_QUESTION.format(name=label), "No", [other.label], "recognition"
    return {
        "concepts": [{
            "name": label,
            "references": [load_image(concept.photos[i], f"photo of {label}") for i in references],
            "masks": [load_image(concept.masks[i], f"mask of {label}").convert("L") for i in references]
            if concept.masks else [],
            "description": None,
        }],
        "image": load_image(image, "query photo"), "question": question, "answer": answer, "task": task,
        "target": label, "options": [], "present": present, "tags": [],
    }
