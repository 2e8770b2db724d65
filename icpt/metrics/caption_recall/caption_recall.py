"""Caption recall: the share of the ground-truth concept names that a caption mentions."""

import re

import datasets
import evaluate

from icpt.metrics.normalization import group_indices


_DESCRIPTION = """
Caption recall, as MC-LLaVA reports it for personalized captions: for each caption, the fraction of the
ground-truth concept names (the concepts visible in the image) that the caption mentions, then the mean
over captions.

A name counts as mentioned when it appears as a whole word, case-insensitively, with or without its
angle brackets: for the name "<bo>" (or "bo"), "<bo> sits on a sofa", "Bo sits", "bo's toy" all count,
"boat" does not. A caption whose reference list is empty has no recall: its per-caption score is None
and it is left out of the mean (`num_without_names` counts such captions). The mean of no scored
caption is None, with a `note`, never NaN. With `groups` (e.g. "single" / "multi") the mean is also
given per group.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): the generated captions.
    references (`list` of `list` of `str`): for each caption, the names of the concepts in the image,
        written "<bo>" or "bo".
    groups (`list` of `str`, *optional*): one group name per caption, for a per-group breakdown.

Returns:
    recall (`float` or `None`), per_caption (`list` of `float` or `None`), num_captions (`int`),
    num_without_names (`int`), note (`str`, empty unless the recall is undefined), and with `groups`:
    per_group (`dict` of recall, num_captions, num_without_names and note per group).

Example:
    >>> from icpt.metrics import load_metric
    >>> caption_recall = load_metric("caption_recall")
    >>> results = caption_recall.compute(
    ...     predictions=["<bo> and Mia on a sofa.", "A dog on a boat."], references=[["<bo>", "<mia>"], ["<bo>"]]
    ... )
    >>> results["recall"], results["per_caption"]
    (0.5, [1.0, 0.0])
"""

_CITATION = """
@article{an2024mcllava,
  title={MC-LLaVA: Multi-Concept Personalized Vision-Language Model},
  author={An, Ruichuan and Yang, Sihan and Lu, Ming and others},
  journal={arXiv preprint arXiv:2411.11706},
  year={2024}
}
"""


def mentions(caption: str, name: str) -> bool:
    """Whether the caption names the concept, as a whole word, with or without angle brackets."""
    bare = name.strip().removeprefix("<").removesuffix(">").strip()
    if not bare:
        raise ValueError(f"The concept name {name!r} is empty: give each name as '<bo>' or 'bo'.")
    return re.search(rf"(?<!\w)<?{re.escape(bare)}>?(?!\w)", caption, flags=re.IGNORECASE) is not None


def caption_score(caption: str, names: list[str]) -> float | None:
    """Share of the names the caption mentions, None when there is no name to mention."""
    if not names:
        return None
    return sum(mentions(caption, name) for name in names) / len(names)


def summarize(scores: list[float | None]) -> dict:
    """Mean recall over the captions that have names."""
    scored = [score for score in scores if score is not None]
    return {
        "recall": sum(scored) / len(scored) if scored else None,
        "num_captions": len(scores),
        "num_without_names": len(scores) - len(scored),
        "note": "" if scored else "no caption with ground-truth names: recall is undefined (None)",
    }


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class CaptionRecall(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.List(datasets.Value("string"))}
            ),
        )

    def _compute(self, predictions, references, groups=None):
        scores = [caption_score(caption, names) for caption, names in zip(predictions, references)]
        results = {**summarize(scores), "per_caption": scores}
        if groups is None:
            return results
        results["per_group"] = {
            group: summarize([scores[i] for i in indices])
            for group, indices in group_indices(groups, len(predictions)).items()
        }
        return results
