"""Identity targets: prompt rows fitted to one training identity each, which the projector learns to predict.

The frozen language model can read an identity from 8 prompt rows when those rows are trained for that
identity alone (`examples/per_identity_rows.py`), but a projector trained only through the LM loss on
episodes does not find such rows (docs/default_model.md). So training gets a direct target: for each
training identity, rows fitted with `train_concept_prompts` (the test-time-training routine, backbone
frozen) on scenes that show it ("Yes") and scenes that do not ("No"), all in environment set A. The
projector, given a few reference photos of the identity, is then regressed onto its rows
(`ICPTForConditionalGeneration.identity_target_loss`) beside the LM loss.

Every identity's rows start from the same random rows (`seed`), so that similar identities end near
each other and the projector has one map to learn, not one per random start. Every step asks about the
identity under a new label (`relabel` of `train_concept_prompts`): rows fitted under one fixed label were
read as the identity under that label but much less under any other (docs/default_model.md), and
episodes give their concepts any label.

Fitting takes about 65 s per identity on one CPU core; the file is rewritten atomically after each
identity, so an interrupted run resumes where it stopped, and several processes can split the work
(`--part`, `--parts`) and be merged afterwards (`--merge`), with `examples/fit_identity_targets.py`:

    python examples/fit_identity_targets.py --output outputs/targets/part0.safetensors --identities 800 --part 0 --parts 2
    python examples/fit_identity_targets.py --output outputs/targets/part1.safetensors --identities 800 --part 1 --parts 2
    python examples/fit_identity_targets.py --output outputs/targets/all.safetensors --identities 800 --merge outputs/targets/part*.safetensors

Example:

```python
>>> from icpt.training.identity_targets import IdentityTargets
>>> targets = IdentityTargets.load("outputs/targets/all.safetensors")  # doctest: +SKIP
>>> len(targets), targets.rows.shape  # doctest: +SKIP
(800, torch.Size([800, 8, 256]))
```
"""

import json
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from icpt.world.tasks import WorldTasks

from .prompt_fitting import train_concept_prompts


class IdentityTargets:
    """Target rows of training identities, `rows[k]` for `identities[k]`, and how they were fitted."""

    def __init__(self, identities: list[int], rows: torch.Tensor, settings: dict):
        if len(identities) != rows.shape[0] or len(set(identities)) != len(identities):
            raise ValueError(f"Identity targets need one row block per distinct identity, got {len(identities)} "
                             f"identities for {rows.shape[0]} blocks.")
        self.identities, self.rows, self.settings = list(identities), rows, dict(settings)

    def __len__(self):
        return len(self.identities)

    def save(self, path) -> None:
        """Writes the file atomically: a temporary file, then a rename (a complete file or the previous one)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {str(identity): self.rows[k].contiguous() for k, identity in enumerate(self.identities)}
        temporary = path.with_name(path.name + ".tmp")
        save_file(tensors, str(temporary), metadata={"settings": json.dumps(self.settings)})
        os.replace(temporary, path)

    @classmethod
    def load(cls, path) -> "IdentityTargets":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"No identity targets at {path}: fit them with `python examples/fit_identity_targets.py`.")
        with safe_open(str(path), framework="pt") as file:
            settings = json.loads((file.metadata() or {}).get("settings", "{}"))
            identities = sorted(int(key) for key in file.keys())
            rows = [file.get_tensor(str(identity)) for identity in identities]
        if not identities:
            return cls([], torch.zeros(0, settings.get("num_rows", 0), 0), settings)
        return cls(identities, torch.stack(rows), settings)

    def check_world(self, world) -> None:
        """Refuses targets of identities outside the world's training split (held-out ones never train)."""
        outside = sorted(set(self.identities) - set(world.split("train")))
        if outside:
            raise ValueError(f"Identity targets hold {len(outside)} identities outside the training split "
                             f"(e.g. {outside[:5]}): held-out identities must never be used in training.")


class TargetReferences:
    """
    The regression term's part of a training batch: a few reference photos of `batch_size` identities with
    targets, each under a random label (the projector must not tie an identity to a name), and their target rows.

    Each identity has `photos` fixed photos in environment set A (rendered on first use, from
    (identity, `seed` + 2)); a draw takes 1 to `max_references` of them.

    Example:

    ```python
    >>> references = TargetReferences(IdentityTargets.load("t.safetensors"), world, processor)  # doctest: +SKIP
    >>> batch = references.draw(np.random.default_rng(0))  # doctest: +SKIP
    >>> batch["target_rows"].shape  # doctest: +SKIP
    torch.Size([16, 8, 256])
    ```
    """

    def __init__(self, targets: IdentityTargets, world, processor, batch_size: int = 16, max_references: int = 5,
                 photos: int = 8, seed: int = 0):
        if len(targets) == 0:
            raise ValueError("The identity targets file holds no identity: fit some with `python examples/fit_identity_targets.py`.")
        if not 1 <= max_references <= photos:
            raise ValueError(f"Need 1 <= max_references ({max_references}) <= photos ({photos}).")
        targets.check_world(world)
        self.targets, self.world, self.processor = targets, world, processor
        self.batch_size, self.max_references, self.photos, self.seed = batch_size, max_references, photos, seed
        self.environments = world.environment_set("A")
        self._photos = {}

    def photos_of(self, identity: int) -> list[Image.Image]:
        if identity not in self._photos:
            rng = np.random.default_rng([identity, self.seed + 2])
            self._photos[identity] = [
                Image.fromarray(self.world.render_array(
                    [identity], self.environments[int(rng.integers(len(self.environments)))], rng))
                for _ in range(self.photos)
            ]
        return self._photos[identity]

    def draw(self, rng: np.random.Generator) -> dict:
        """`target_rows` `(C, L, d)` and the `target_`-prefixed `prepare_references` inputs of the same C concepts."""
        count = min(self.batch_size, len(self.targets))
        picks = rng.choice(len(self.targets), count, replace=False)
        labels = rng.choice(np.arange(1, 10_000), count, replace=False)
        references = {}
        for pick, label in zip(picks, labels):
            photos = self.photos_of(self.targets.identities[int(pick)])
            chosen = rng.choice(len(photos), int(rng.integers(1, self.max_references + 1)), replace=False)
            references[f"<w{int(label)}>"] = [photos[int(k)] for k in chosen]
        inputs = self.processor.prepare_references(references)
        batch = {f"target_{key}": value for key, value in inputs.items() if key != "concept_names"}
        batch["target_rows"] = self.targets.rows[torch.as_tensor(picks)]
        return batch


def scenes_of(tasks, identity: int, count: int, positive: bool, rng: np.random.Generator) -> list[Image.Image]:
    """Query scenes (set A) with the identity (`positive`) or without it and without its look-alike twin."""
    # a named question's last image is its query scene
    return [Image.fromarray(tasks.named_question(rng, 1, kind="recognition", positive=positive, look_alike=False,
                                                 anchor=identity).images[-1]) for _ in range(count)]


def training_scenes(world, count: int, seed: int = 0) -> list[Image.Image]:
    """`count` query scenes of training identities in environment set A (where the targets are fitted)."""
    tasks = WorldTasks(world, identities="train", query_environments=("A",), look_alike_fraction=0.0)
    rng = np.random.default_rng([seed, 5])
    return [Image.fromarray(tasks.named_question(rng, 1, kind="recognition", positive=True, look_alike=False).images[-1])
            for _ in range(count)]


def fit_identity_targets(model, processor, world, identities: list[int], output, num_rows: int = 8, steps: int = 60,
                         scenes: int = 16, seed: int = 0, progress: bool = True) -> IdentityTargets:
    """
    Fits `num_rows` prompt rows to each training identity and saves them to `output`, one identity at a time.

    `model` is a wrapper without a reader adapter (`ICPTForConditionalGeneration.from_backbone`): the targets are
    what the frozen language model reads, so they depend on the backbone alone, not on a trained checkpoint.
    The rows start at norm `model.config.prompt_norm` (which also scales the step size), recorded in the
    file's settings. Each identity's rows are trained for `steps` full-batch steps (`train_concept_prompts`) on `scenes` scenes
    with it and `scenes` without it, drawn from a generator seeded by (identity, `seed` + 1), starting from
    the rows of `seed`, each step under a new label drawn from (identity, `seed` + 3).
    Identities already in `output` (from an interrupted run with the same settings) are
    kept, not refitted.

    Example:

    ```python
    >>> from icpt.inference import DEFAULT_BACKBONE
    >>> processor = ICPTProcessor.from_backbone(DEFAULT_BACKBONE, max_prompt_length=8)  # doctest: +SKIP
    >>> model = ICPTForConditionalGeneration.from_backbone(
    ...     DEFAULT_BACKBONE, prompt_token_id=processor.prompt_token_id, max_prompt_length=8)  # doctest: +SKIP
    >>> model.set_prompt_norm(17.8)  # where the projector's rows will start  # doctest: +SKIP
    >>> world = world_for(DEFAULT_BACKBONE)  # doctest: +SKIP
    >>> targets = fit_identity_targets(model, processor, world, world.split("train")[:4], "t.safetensors")  # doctest: +SKIP
    ```
    """
    if model.config.reader_lora_rank:
        raise ValueError(
            "Identity targets are rows the frozen language model reads as the identity, but this model carries a "
            f"reader adapter (rank {model.config.reader_lora_rank}), which would make the targets depend on it: fit "
            "them on a bare wrapper, ICPTForConditionalGeneration.from_backbone(backbone), as "
            "examples/fit_identity_targets.py does.")
    held_out = sorted(set(identities) - set(world.split("train")))
    if held_out:
        raise ValueError(f"Identities {held_out[:5]} are not training identities: only the training split gets targets.")
    settings = {"num_rows": num_rows, "steps": steps, "scenes": scenes, "seed": seed, "labels": "random",
                "reader": "frozen", "backbone": str(model.config.base_model_name_or_path),
                "prompt_norm": model.config.prompt_norm}
    done = {}
    if Path(output).is_file():
        previous = IdentityTargets.load(output)
        if previous.settings != settings:
            raise ValueError(f"{output} holds targets fitted with {previous.settings}, not {settings}: "
                             "pass another --output or the same settings.")
        done = {identity: previous.rows[k] for k, identity in enumerate(previous.identities)}
    tasks = WorldTasks(world, identities="train", query_environments=("A",), look_alike_fraction=0.0)
    model.eval()
    bar = tqdm(identities, desc="identity targets", disable=not progress)
    for identity in bar:
        if identity in done:
            continue
        rng = np.random.default_rng([identity, seed + 1])
        positives = scenes_of(tasks, identity, scenes, True, rng)
        negatives = scenes_of(tasks, identity, scenes, False, rng)
        bank, losses = train_concept_prompts(model, processor, "<w0>", positives, negatives, num_rows=num_rows,
                                             steps=steps, seed=seed, relabel=np.random.default_rng([identity, seed + 3]))
        done[identity] = bank.prompts[0].detach().clone()
        bar.set_postfix(loss=f"{losses[0]:.2f}->{losses[-1]:.2f}")
        IdentityTargets(list(done), torch.stack(list(done.values())), settings).save(output)
    order = [identity for identity in identities if identity in done]
    return IdentityTargets(order, torch.stack([done[i] for i in order]) if order else torch.zeros(0), settings)


def merge_identity_targets(paths, output, keep: list[int] | None = None) -> IdentityTargets:
    """One file from several parts fitted with the same settings (only the identities in `keep`, when given)."""
    parts = [IdentityTargets.load(path) for path in paths]
    if not parts:
        raise ValueError("Nothing to merge: name at least one targets file.")
    for path, part in zip(paths, parts):
        if part.settings != parts[0].settings:
            raise ValueError(f"{path} was fitted with {part.settings}, unlike {paths[0]} ({parts[0].settings}).")
    rows = {identity: part.rows[k] for part in parts for k, identity in enumerate(part.identities)}
    if keep is not None:
        missing = sorted(set(keep) - set(rows))
        if missing:
            raise ValueError(f"The parts lack {len(missing)} of the identities to keep (e.g. {missing[:5]}): "
                             "let the fitting processes finish first.")
        rows = {identity: rows[identity] for identity in keep}
    order = sorted(rows)
    merged = IdentityTargets(order, torch.stack([rows[i] for i in order]), parts[0].settings)
    merged.save(output)
    return merged


def identity_order(world, count: int) -> list[int]:
    """The first `count` training identities of one fixed random order: a larger count only adds identities."""
    train = world.split("train")
    if not 1 <= count <= len(train):
        raise ValueError(f"The number of identities must lie in [1, {len(train)}] (the training split), got {count}.")
    return [int(i) for i in np.random.default_rng(11).choice(train, len(train), replace=False)[:count]]
