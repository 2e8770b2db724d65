"""Recognition accuracy in the Yo'LLaVA protocol: positive, negative and weighted accuracy."""


import datasets
import evaluate

from icpt.metrics.normalization import group_indices, normalize_answer


_DESCRIPTION = """
Recognition accuracy in the Yo'LLaVA protocol. Each example asks whether a concept is in a photo
("Can you see <bo> in this photo? Answer with a single word or phrase."); the reference says whether it
really is (True for a photo of the concept, False for a photo of something else).

How a free-text answer is read: the answer is normalized (lower-cased, punctuation and the articles
a/an/the removed, whitespace collapsed) and only its first word counts. "yes" is a yes, "no" is a no.
Anything else ("Yeah", "I think so", "<bo> is there", an empty answer) is wrong whether the concept
is present or not, and is counted in `num_unparsed`.

- positive accuracy: share of the examples whose reference is True answered yes;
- negative accuracy: share of the examples whose reference is False answered no;
- weighted accuracy: 0.5 * positive + 0.5 * negative, so the many negatives of the protocol do not
  swamp the few positives.

When there are no positive (or no negative) examples, that accuracy and the weighted accuracy are
undefined: they are returned as None and `note` says why (never NaN). With `groups` (for example the
concept each question asks about) the same figures are also given per group, plus
`macro_weighted_accuracy`, the mean of the groups' weighted accuracies where defined.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): the model's free-text answers.
    references (`list` of `bool`): True when the concept asked about is in the photo.
    groups (`list` of `str`, *optional*): one group name per example (e.g. the concept asked about),
        for a per-group breakdown.

Returns:
    positive_accuracy (`float` or `None`), negative_accuracy (`float` or `None`),
    weighted_accuracy (`float` or `None`), num_positives (`int`), num_negatives (`int`),
    num_unparsed (`int`: answers whose first word is neither yes nor no), note (`str`, empty unless
    something is undefined), and with `groups`: per_group (`dict` of the same figures per group) and
    macro_weighted_accuracy (`float` or `None`).

Example:
    >>> from icpt.metrics import load_metric
    >>> recognition = load_metric("recognition")
    >>> results = recognition.compute(
    ...     predictions=["Yes.", "no", "Yes, it is.", "Maybe"], references=[True, False, False, True]
    ... )
    >>> results["positive_accuracy"], results["negative_accuracy"], results["weighted_accuracy"]
    (0.5, 0.5, 0.5)
"""

_CITATION = """
@inproceedings{nguyen2024yollava,
  title={Yo'LLaVA: Your Personalized Language and Vision Assistant},
  author={Nguyen, Thao and Liu, Haotian and Li, Yuheng and Cai, Mu and Ojha, Utkarsh and Lee, Yong Jae},
  booktitle={NeurIPS},
  year={2024}
}
"""


def read_yes_no(answer: str) -> str | None:
    """The answer read as "yes" or "no" (its normalized first word), or None when it is neither."""
    words = normalize_answer(answer).split()
    if words and words[0] in ("yes", "no"):
        return words[0]
    return None


def summarize(predictions: list[str], references: list[bool]) -> dict:
    """Positive, negative and weighted accuracy of one set of examples."""
    answers = [read_yes_no(prediction) for prediction in predictions]
    num_positives = sum(1 for reference in references if reference)
    num_negatives = len(references) - num_positives
    positives_right = sum(1 for answer, reference in zip(answers, references) if reference and answer == "yes")
    negatives_right = sum(1 for answer, reference in zip(answers, references) if not reference and answer == "no")
    positive_accuracy = positives_right / num_positives if num_positives else None
    negative_accuracy = negatives_right / num_negatives if num_negatives else None
    if positive_accuracy is not None and negative_accuracy is not None:
        weighted_accuracy = 0.5 * positive_accuracy + 0.5 * negative_accuracy
    else:
        weighted_accuracy = None
    missing = [kind for kind, count in (("positive", num_positives), ("negative", num_negatives)) if count == 0]
    if missing:
        note = (
            f"no {' and no '.join(missing)} examples: "
            + ", ".join(f"{kind}_accuracy" for kind in missing)
            + " and weighted_accuracy are undefined (None)"
        )
    else:
        note = ""
    return {
        "positive_accuracy": positive_accuracy,
        "negative_accuracy": negative_accuracy,
        "weighted_accuracy": weighted_accuracy,
        "num_positives": num_positives,
        "num_negatives": num_negatives,
        "num_unparsed": sum(1 for answer in answers if answer is None),
        "note": note,
    }


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Recognition(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("bool")}
            ),
        )

    def _compute(self, predictions, references, groups=None):
        results = summarize(predictions, references)
        if groups is None:
            return results
        results["per_group"] = {
            group: summarize([predictions[i] for i in indices], [references[i] for i in indices])
            for group, indices in group_indices(groups, len(predictions)).items()
        }
        defined = [
            row["weighted_accuracy"] for row in results["per_group"].values() if row["weighted_accuracy"] is not None
        ]
        results["macro_weighted_accuracy"] = sum(defined) / len(defined) if defined else None
        return results
