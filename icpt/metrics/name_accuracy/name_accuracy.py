"""Name accuracy: whether an answer names exactly the asked concepts that are in the photo, per concept asked."""

import re

import datasets
import evaluate

from icpt.metrics.normalization import group_indices


_DESCRIPTION = """
Name accuracy of answers that name concepts (a presence list "<bo>, <kiki>", a caption "<bo> sits left of
<kiki>"): for each answer, every concept the question asks about is one yes/no decision, right when the answer
names a concept that is in the photo or leaves out one that is not; the answer's score is the share of its
decisions that are right, and the metric is the mean over answers.

Why per concept and not the recall or the F1 of the names: an answer that looks at no photo can score well on
those (a caption naming every concept asked recalls every present one; a list of every name asked has an F1 of
about 2/3 when half are present), while on this metric naming them all scores the share present and naming none
the share absent, so guessing stays at the share of the more frequent case. When every concept asked is in the
photo (MyVLM's and RAP's caption sets) the score is the caption recall those papers report; MC-LLaVA's caption
questions name every character of a scenario, and there a character named but absent also counts as wrong.

A name counts as named when it appears as a whole word, case-insensitively, with or without its angle
brackets: for the name "<bo>" (or "bo"), "<bo> sits on a sofa", "Bo sits", "bo's toy" all count, "boat" does
not. An answer whose question asks about no concept has no score: its per-answer score is None and it is left
out of the mean (`num_without_names` counts such answers). The mean of no scored answer is None, with a `note`,
never NaN. With `groups` (e.g. "single" / "multi") the mean is also given per group.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): the answers (presence lists or captions).
    references (`list` of `list` of `str`): for each answer, the names of the asked concepts that are in the
        photo, written "<bo>" or "bo".
    asked (`list` of `list` of `str`): for each answer, the names of the concepts its question asks about;
        every reference name must be among them.
    groups (`list` of `str`, *optional*): one group name per answer, for a per-group breakdown.

Returns:
    accuracy (`float` or `None`), per_answer (`list` of `float` or `None`), num_answers (`int`),
    num_without_names (`int`), note (`str`, empty unless the accuracy is undefined), and with `groups`:
    per_group (`dict` of accuracy, num_answers, num_without_names and note per group).

Example:
    >>> from icpt.metrics import load_metric
    >>> name_accuracy = load_metric("name_accuracy")
    >>> results = name_accuracy.compute(
    ...     predictions=["<bo> and Mia on a sofa.", "A dog on a boat."],
    ...     references=[["<bo>"], ["<bo>"]],
    ...     asked=[["<bo>", "<mia>"], ["<bo>"]],
    ... )
    >>> results["accuracy"], results["per_answer"]
    (0.25, [0.5, 0.0])
"""

_CITATION = """
@article{an2024mcllava,
  title={MC-LLaVA: Multi-Concept Personalized Vision-Language Model},
  author={An, Ruichuan and Yang, Sihan and Lu, Ming and others},
  journal={arXiv preprint arXiv:2411.11706},
  year={2024}
}
"""


def mentions(answer: str, name: str) -> bool:
    """Whether the answer names the concept, as a whole word, with or without angle brackets."""
    bare = name.strip().removeprefix("<").removesuffix(">").strip()
    if not bare:
        raise ValueError(f"The concept name {name!r} is empty: give each name as '<bo>' or 'bo'.")
    return re.search(rf"(?<!\w)<?{re.escape(bare)}>?(?!\w)", answer, flags=re.IGNORECASE) is not None


def name_score(answer: str, present: list[str], asked: list[str]) -> float | None:
    """Share of the asked concepts the answer gets right (named if present, not named if absent); None when the
    question asks about no concept."""
    unknown = set(present) - set(asked)
    if unknown:
        raise ValueError(f"Present names {sorted(unknown)} are not among the asked names {list(asked)}: give every "
                         "concept the question asks about in `asked`, and only asked ones in `references`.")
    if not asked:
        return None
    return sum(mentions(answer, name) == (name in present) for name in asked) / len(asked)


def summarize(scores: list[float | None]) -> dict:
    """Mean over the answers whose question asks about a concept."""
    scored = [score for score in scores if score is not None]
    return {
        "accuracy": sum(scored) / len(scored) if scored else None,
        "num_answers": len(scores),
        "num_without_names": len(scores) - len(scored),
        "note": "" if scored else "no answer asks about a concept: the accuracy is undefined (None)",
    }


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class NameAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({
                "predictions": datasets.Value("string"),
                "references": datasets.List(datasets.Value("string")),
                "asked": datasets.List(datasets.Value("string")),
            }),
        )

    def _compute(self, predictions, references, asked, groups=None):
        scores = [name_score(answer, present, names) for answer, present, names in zip(predictions, references, asked)]
        results = {**summarize(scores), "per_answer": scores}
        if groups is None:
            return results
        results["per_group"] = {
            group: summarize([scores[i] for i in indices])
            for group, indices in group_indices(groups, len(predictions)).items()
        }
        return results
