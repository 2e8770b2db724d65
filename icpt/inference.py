"""Loading an ICPT model (the embedded default or any checkpoint), encoding concepts and answering questions.

The one place that loads a model (`load_model`) and that says where the embedded default lives (`DEFAULT_DIR`):
every command, the web app, the evaluation and the examples load through here.

Example:

```python
>>> from icpt.inference import answer, choose, encode, load_model
>>> from processing_icpt import ICPTProcessor
>>> model = load_model()  # the embedded default  # doctest: +SKIP
>>> processor = ICPTProcessor.from_pretrained(DEFAULT_MODEL)  # doctest: +SKIP
>>> bank = encode(model, processor, {"<bo>": ["bo1.jpg", "bo2.jpg"]})  # doctest: +SKIP
>>> answer(model, processor, "Is <bo> in this photo?", "photo.jpg", bank)  # doctest: +SKIP
'Yes'
>>> choose(model, processor, "Is <bo> red or blue?", ["red", "blue"], bank=bank)  # doctest: +SKIP
'red'
```
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from modeling_icpt import ConceptBank, ICPTConfig, ICPTForConditionalGeneration

# the embedded default, shipped inside the package: a backbone trained on the generated world, its projector
# (whose config names the backbone beside it) and the ablation projectors of docs/results.md
DEFAULT_DIR = Path(__file__).resolve().parent / "default"
DEFAULT_BACKBONE = DEFAULT_DIR / "backbone"
DEFAULT_MODEL = DEFAULT_DIR / "projector"


def load_model(model: str | os.PathLike = DEFAULT_MODEL, backbone=None, device=None,
               config: ICPTConfig | None = None) -> ICPTForConditionalGeneration:
    """
    An ICPT checkpoint (a folder or a Hub repo id), in eval mode; its processor is
    `ICPTProcessor.from_pretrained(model)`.

    Args:
        model: the checkpoint (default: the embedded one, `DEFAULT_MODEL`).
        backbone: a backbone folder or Hub id to use instead of the one the checkpoint's config names, or a loaded
            backbone (several checkpoints without a reader adapter may share one).
        device: where to put the model (`"cpu"`, `"cuda"`, ...); default: where it was loaded.
        config: the checkpoint's config, read and changed by the caller (default: read from the checkpoint).

    Example:

    ```python
    >>> model = load_model("me/icpt-qwen2.5-vl-3b", device="cuda")  # doctest: +SKIP
    ```
    """
    path = Path(model)
    if path.resolve() == DEFAULT_MODEL and not DEFAULT_MODEL.is_dir():
        raise FileNotFoundError(
            f"No --model given and the embedded default checkpoint {DEFAULT_MODEL} is not installed: "
            "pass --model PATH_OR_REPO (an ICPT checkpoint folder or Hub repo id)."
        )
    if path.is_dir():
        config_file = path / "config.json"
        model_type = json.loads(config_file.read_text()).get("model_type") if config_file.is_file() else None
        if model_type != "icpt":
            found = f"its config.json has model_type {model_type!r}" if config_file.is_file() else "no config.json"
            raise ValueError(
                f"{path} is not an ICPT checkpoint ({found}): "
                "give a folder written by ICPTForConditionalGeneration.save_pretrained (e.g. by `icpt train`)."
            )
    elif path.is_absolute() or str(model).startswith((".", "~")) or str(model).count("/") > 1:
        # not a Hub repo id ("name" or "namespace/name"): a local path that is not there
        raise FileNotFoundError(f"No ICPT checkpoint at {model}: check the path (or give a Hub repo id such as me/icpt-model).")
    if isinstance(backbone, os.PathLike):
        backbone = str(backbone)
    loaded = ICPTForConditionalGeneration.from_pretrained(str(model), config=config, backbone=backbone).eval()
    return loaded.to(device) if device is not None else loaded


def load_bank(path) -> ConceptBank | None:
    """The `ConceptBank` at a file, a folder or a Hub repo id; `None` when `path` is `None`."""
    return None if path is None else ConceptBank.from_pretrained(path)


def encode(model, processor, concepts: dict[str, list], progress: bool = True) -> ConceptBank:
    """
    A `ConceptBank` of `concepts` (`{label: [photos]}`), encoded in batches (`ConceptBank.encode`), with a progress bar.

    Example:

    ```python
    >>> bank = encode(model, processor, concept_folders("my_photos"))  # doctest: +SKIP
    >>> bank.lengths  # doctest: +SKIP
    {'<bo>': 5, '<kiki>': 3}
    ```
    """
    limit = model.config.max_references
    for label, photos in concepts.items():
        if len(photos) > limit:
            raise ValueError(f"{label} has {len(photos)} photos but this projector takes at most {limit} per concept: keep the {limit} clearest.")
    return ConceptBank.encode(model, processor, {label: list(photos) for label, photos in concepts.items()},
                              progress=progress)


def _question_inputs(model, processor, question: str, image, bank, retrieved=None):
    content = ([{"type": "image"}] if image is not None else []) + [{"type": "text", "text": question}]
    return processor(messages=[{"role": "user", "content": content}],
                     images=[[image]] if image is not None else None, concepts=bank,
                     retrieved=[list(retrieved)] if retrieved else None).to(model.device)


def answer(model, processor, question: str, image=None, bank=None, max_new_tokens: int = 48, retrieved=None) -> str:
    """
    The model's greedy answer to `question` about `image` (a path or PIL image; `None` for a text-only question).
    `retrieved`: labels of `bank` that enter the prompt although the question does not name them.

    Example:

    ```python
    >>> answer(model, processor, "Is <bo> in this photo?", "photo.jpg", bank)  # doctest: +SKIP
    'Yes'
    ```
    """
    inputs = _question_inputs(model, processor, question, image, bank, retrieved)
    out = model.generate(**inputs, concepts=bank, max_new_tokens=max_new_tokens, do_sample=False)
    return processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def choose(model, processor, question: str, options: list[str], image=None, bank=None, retrieved=None) -> str:
    """
    The option the model finds most likely as the answer to `question` (answer ranking, the way SEED-Bench
    scores multiple-choice questions): an answer to "A or B?" even from a backbone that never learned to give one
    in words, and what the evaluation scores either/or questions by. `image`, `bank` and `retrieved` as in `answer`.

    Example:

    ```python
    >>> choose(model, processor, "Is <bo> on the left or on the right?", ["on the left", "on the right"], "photo.jpg", bank)  # doctest: +SKIP
    'on the left'
    ```
    """
    if len(options) < 2:
        raise ValueError(f"choose needs at least two options to choose from, got {list(options)}.")
    inputs = _question_inputs(model, processor, question, image, bank, retrieved)
    scores = option_log_likelihoods(model, processor.tokenizer, inputs, options, concepts=bank)
    return options[int(scores.argmax())]


@torch.no_grad()
def option_log_likelihoods(model, tokenizer, inputs, options: list[str], **model_kwargs) -> torch.Tensor:
    """
    The log-probability of each option's tokens (as `tokenizer` writes the option alone) following the prompt
    `inputs` of one question (a batch of one), under `model` (an ICPT model, with `concepts=` in `model_kwargs`, or
    a plain backbone). The prompt's other per-token tensors are extended over the option: the attention mask with
    ones, any other (token types) with zeros.
    """
    prompt = inputs["input_ids"]
    if prompt.shape[0] != 1:
        raise ValueError(f"option_log_likelihoods scores one question at a time; got a batch of {prompt.shape[0]}.")
    scores = []
    for option in options:
        ids = tokenizer(option, add_special_tokens=False, return_tensors="pt")["input_ids"].to(prompt.device)
        if ids.shape[1] == 0:
            raise ValueError(f"The option {option!r} has no tokens: give each option some text.")
        extended = dict(inputs)
        for key, value in inputs.items():
            if isinstance(value, torch.Tensor) and value.shape == prompt.shape:
                filler = (ids if key == "input_ids" else torch.ones_like(ids) if key == "attention_mask"
                          else torch.zeros_like(ids))
                extended[key] = torch.cat([value, filler.to(value.dtype)], dim=1)
        logits = model(**extended, **model_kwargs).logits[0, prompt.shape[1] - 1 : -1].float()
        scores.append(logits.log_softmax(-1).gather(1, ids[0][:, None]).sum())
    return torch.stack(scores)
