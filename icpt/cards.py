"""Model cards for ICPT repositories on the Hub, rendered from the Jinja templates in `hub_cards/`.

Two kinds of repository get a card:
- a projector repository (`projector_card`): the trained projector, its config and code;
- a concept bank repository (`concept_bank_card`): a user's encoded concepts, without their photos.

Both fill the metadata through `huggingface_hub.ModelCardData` (`library_name: transformers`,
`pipeline_tag: image-text-to-text`, `base_model`, tags `icpt` and `custom_code`), and the projector card
carries the evaluation harness's results as `model-index` (`huggingface_hub.EvalResult` entries).

The model and the bank push whatever card they are given, after their files (`PreTrainedModel.push_to_hub`
writes transformers' own README); `card_for` gives them ICPT's:

```python
>>> model.push_to_hub("me/icpt-qwen2.5-vl-3b", processor=processor, card=card_for(model))  # doctest: +SKIP
>>> bank.push_to_hub("me/my-pets", card=card_for(bank))  # doctest: +SKIP
```
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData


LIBRARY_NAME = "transformers"
PIPELINE_TAG = "image-text-to-text"
ICPT_TAGS = ("icpt", "custom_code")
PROJECTOR_TEMPLATE = "icpt_projector_card.md"
CONCEPT_BANK_TEMPLATE = "concept_bank_card.md"

_EVAL_REQUIRED_KEYS = ("task_type", "dataset_type", "dataset_name", "metric_type", "metric_value")
_EVAL_KEYS = tuple(f.name for f in dataclasses.fields(EvalResult))


def template_path(name: str) -> Path:
    """Where a card template lives: `icpt/hub_cards/` in an installed package, `hub_cards/` in a checkout.

    Example:
        >>> template_path("icpt_projector_card.md").name
        'icpt_projector_card.md'
    """
    package_dir = Path(__file__).resolve().parent
    candidates = [package_dir / "hub_cards" / name, package_dir.parent / "hub_cards" / name]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"Model card template {name!r} not found in {' or '.join(str(c.parent) for c in candidates)}. "
        "Run from a source checkout (which has hub_cards/) or reinstall icpt so that its package data "
        "includes hub_cards/*.md."
    )


def _check_repo_id(name: str, value: str) -> None:
    parts = value.split("/") if isinstance(value, str) else []
    if not (1 <= len(parts) <= 2 and all(parts)) or value.startswith((".", "~")) or os.path.isabs(value):
        raise ValueError(
            f"{name} must be a Hub repo id such as 'namespace/name', got {value!r}. A card can only name a "
            "model on the Hub: push a local backbone first and pass its repo id."
        )


def _markdown_cell(text: str) -> str:
    """`text` as inline code that survives a markdown table, so labels like `<bo>` are shown, not parsed as HTML."""
    text = str(text).replace("|", "\\|").replace("\n", " ")
    fence = "`"
    while fence in text:
        fence += "`"
    padding = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{padding}{text}{padding}{fence}"


def _format_number(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:.4g}"


def _eval_result(entry: Mapping, index: int) -> EvalResult:
    if not isinstance(entry, Mapping):
        raise ValueError(f"eval_results[{index}] must be a dict of EvalResult fields, got {type(entry).__name__}.")
    missing = [key for key in _EVAL_REQUIRED_KEYS if key not in entry]
    unknown = sorted(set(entry) - set(_EVAL_KEYS))
    if missing or unknown:
        raise ValueError(
            f"eval_results[{index}] has missing keys {missing} and unknown keys {unknown}. Each result is a dict "
            f"with the keys {list(_EVAL_REQUIRED_KEYS)} and optionally "
            f"{sorted(set(_EVAL_KEYS) - set(_EVAL_REQUIRED_KEYS))} (the fields of huggingface_hub.EvalResult)."
        )
    value = entry["metric_value"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"eval_results[{index}]['metric_value'] must be a finite number, got {value!r}.")
    return EvalResult(**entry)


def _card_data(*, repo_id: str, base_model: str, tags, license, datasets=None, eval_results=None) -> ModelCardData:
    _check_repo_id("repo_id", repo_id)
    _check_repo_id("base_model", base_model)
    extra_tags = list(tags or [])
    if not all(isinstance(tag, str) and tag for tag in extra_tags):
        raise ValueError(f"tags must be non-empty strings, got {extra_tags!r}.")
    return ModelCardData(
        library_name=LIBRARY_NAME,
        pipeline_tag=PIPELINE_TAG,
        base_model=base_model,
        license=license,
        datasets=list(datasets) if datasets else None,
        tags=[*ICPT_TAGS, *extra_tags],
        # `model_name` names the `model-index` entry; without results it would be a stray metadata key.
        model_name=repo_id.split("/")[-1] if eval_results else None,
        eval_results=eval_results or None,
    )


def projector_card(
    *,
    repo_id: str,
    base_model: str,
    training_data: str,
    prompt_length_stats: Mapping[str, float] | None = None,
    eval_results: Sequence[Mapping] | None = None,
    datasets: Sequence[str] | None = None,
    license: str | None = "apache-2.0",
    tags: Sequence[str] | None = None,
) -> ModelCard:
    """The model card of an ICPT projector repository, from `hub_cards/icpt_projector_card.md`.

    Args:
        repo_id: the repository the projector is pushed to (`"namespace/name"`).
        base_model: Hub id of the frozen backbone the projector was trained for.
        training_data: a markdown paragraph that says what the projector was trained on.
        prompt_length_stats: prompt tokens per concept, `{statistic: number}` in display order, e.g.
            `{"mean": 6.2, "min": 2, "max": 16}`; `None` when not measured.
        eval_results: the harness's results, one dict per number, with the fields of
            `huggingface_hub.EvalResult` (`task_type`, `dataset_type`, `dataset_name`, `metric_type`,
            `metric_value`, and optionally `task_name`, `dataset_split`, `metric_name`, ...); they go to
            the card's `model-index` metadata and to its evaluation table. `None` when not evaluated.
        datasets: Hub ids of the datasets used for training, if any are on the Hub.
        license: the license id for the metadata.
        tags: tags added after `icpt` and `custom_code`.

    Example:
        >>> card = projector_card(
        ...     repo_id="me/icpt-tiny", base_model="me/tiny-vlm", training_data="A generated world.",
        ...     prompt_length_stats={"mean": 6.5, "max": 16},
        ...     eval_results=[{"task_type": "image-text-to-text", "dataset_type": "yollava",
        ...                    "dataset_name": "Yo'LLaVA", "metric_type": "accuracy", "metric_value": 0.9}])
        >>> card.data.pipeline_tag, card.data.tags, card.data.eval_results[0].metric_value
        ('image-text-to-text', ['icpt', 'custom_code'], 0.9)
    """
    if not isinstance(training_data, str) or not training_data.strip():
        raise ValueError("training_data must say what the projector was trained on (a non-empty string).")
    stats = []
    for name, value in (prompt_length_stats or {}).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"prompt_length_stats[{name!r}] must be a finite number, got {value!r}.")
        stats.append((str(name), _format_number(value)))
    results = [_eval_result(entry, i) for i, entry in enumerate(eval_results or [])]
    card_data = _card_data(
        repo_id=repo_id, base_model=base_model, tags=tags, license=license, datasets=datasets, eval_results=results
    )
    eval_rows = [
        {
            "task": result.task_name or result.task_type,
            "dataset": result.dataset_name,
            "split": result.dataset_split or "",
            "metric": result.metric_name or result.metric_type,
            "value": _format_number(result.metric_value),
        }
        for result in results
    ]
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path(PROJECTOR_TEMPLATE)),
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        base_model=base_model,
        training_data=training_data.strip(),
        prompt_length_stats=stats,
        eval_rows=eval_rows,
    )


def concept_bank_card(
    *,
    repo_id: str,
    base_model: str,
    labels: Sequence[str],
    prompt_lengths: Mapping[str, int],
    projector: str | None = None,
    bank_filename: str = "concept_bank.safetensors",
    license: str | None = None,
    tags: Sequence[str] | None = None,
) -> ModelCard:
    """The model card of a pushed concept bank (encoded concepts, no photos), from `hub_cards/concept_bank_card.md`.

    Args:
        repo_id: the repository the bank is pushed to (`"namespace/name"`).
        base_model: Hub id of the backbone the bank was made for.
        labels: the concepts' labels, in the bank's order.
        prompt_lengths: prompt tokens per concept, `{label: length}` (a `ConceptBank.lengths`).
        projector: Hub id of the ICPT projector that encoded the bank, when it is on the Hub.
        bank_filename: the bank's file in the repository.
        license: the license id for the metadata, if any.
        tags: tags added after `icpt`, `custom_code` and `icpt-concept-bank`.

    Example:
        >>> card = concept_bank_card(repo_id="me/my-pets", base_model="me/tiny-vlm",
        ...                          labels=["<bo>", "<mia>"], prompt_lengths={"<bo>": 4, "<mia>": 7})
        >>> "| `<bo>` | 4 |" in card.text
        True
    """
    labels = list(labels)
    if not labels:
        raise ValueError("A concept bank card needs at least one label.")
    if not all(isinstance(label, str) and label for label in labels):
        raise ValueError(f"labels must be non-empty strings, got {labels!r}.")
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(f"Concept label(s) {repeated} given more than once: each concept needs a unique label.")
    if set(prompt_lengths) != set(labels):
        raise ValueError(
            f"prompt_lengths must have one entry per label: missing {sorted(set(labels) - set(prompt_lengths))}, "
            f"unknown {sorted(set(prompt_lengths) - set(labels))}."
        )
    for label in labels:
        length = prompt_lengths[label]
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise ValueError(f"prompt_lengths[{label!r}] must be a positive int, got {length!r}.")
    if projector is not None:
        _check_repo_id("projector", projector)
    card_data = _card_data(
        repo_id=repo_id, base_model=base_model, tags=["icpt-concept-bank", *(tags or [])], license=license
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path(CONCEPT_BANK_TEMPLATE)),
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        base_model=base_model,
        projector=projector,
        bank_filename=bank_filename,
        concepts=[{"label": _markdown_cell(label), "prompt_length": prompt_lengths[label]} for label in labels],
        concept_count=len(labels),
        total_prompt_tokens=sum(prompt_lengths[label] for label in labels),
    )


def card_for(model_or_bank, training_data: str = "Not described by the uploader."):
    """
    The card a push of `model_or_bank` writes: a function `full_repo_id -> ModelCard` (a push knows the full repo id
    only once it has asked the Hub for the token's namespace), for `push_to_hub(..., card=...)`.

    For an `ICPTForConditionalGeneration`, its `projector_card` (without evaluation results); for a `ConceptBank`,
    its `concept_bank_card`. Both need the backbone's Hub id (`base_model_name_or_path`); a local path is refused
    before anything is uploaded.

    Example:

    ```python
    >>> bank.push_to_hub("me/my-pets", card=card_for(bank))  # doctest: +SKIP
    ```
    """
    if hasattr(model_or_bank, "config"):  # a model: its config names the backbone
        base_model = model_or_bank.config.base_model_name_or_path

        def card(repo_id):
            try:
                return projector_card(repo_id=repo_id, base_model=base_model, training_data=training_data)
            except ValueError as error:
                raise ValueError(f"Cannot write the ICPT model card: {error} Set model.config.base_model_name_or_path "
                                 "to the backbone's Hub id (or pass another card).") from None
    else:
        bank = model_or_bank

        def card(repo_id):
            try:
                return concept_bank_card(repo_id=repo_id, base_model=bank.base_model_name_or_path, labels=bank.labels,
                                         prompt_lengths=bank.lengths)
            except ValueError as error:
                raise ValueError(f"Cannot write the concept bank card: {error} Or pass another card.") from None
    return card
