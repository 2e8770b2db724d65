"""Exact-match accuracy for multiple-choice questions (the two-option VQA and text-only QA)."""

import re

import datasets
import evaluate

from icpt.metrics.normalization import group_indices, normalize_answer


_DESCRIPTION = """
Exact-match accuracy for multiple-choice questions, such as the two-option visual and text-only
questions of Yo'LLaVA. The reference is the text of the correct option.

How a prediction is read. Texts are compared after SQuAD normalization (lower-cased, punctuation and
the articles a/an/the removed, whitespace collapsed). When the example's `options` are given, the
prediction picks an option by the first rule that applies:
1. it is a bare option letter: "A", "a", "(A)", "A.", "A)" or "A:" picks the first option, "B" the
   second, and so on;
2. it is an option letter with a marker, then text ("(A) Dog", "A. Dog", "A) Dog", "A: Dog"): it picks
   that letter's option if the text is that option's text, and nothing if the text differs;
3. its normalized text equals an option's normalized text ("the Dog." picks "Dog").
It is correct when the picked option is the reference. Anything else picks no option and is wrong:
a letter out of range, a letter whose text is another option's, both options ("Dog or cat"), an
empty answer. Such predictions are counted in `num_unmatched`. Options that are equal after
normalization are one answer: picking either is right when its text is the reference's (Yo'LLaVA's
text-only file has two questions whose options are both "No"). Without `options`, only rule 1 is
possible: the prediction is correct when its normalized text equals the reference's.

Returns None (with a `note`) for the accuracy of an empty set of examples, never NaN. With `groups`
(e.g. "single" / "multi" for single- and multi-concept images) the figures are also given per group.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): the model's answers.
    references (`list` of `str`): the text of the correct option.
    options (`list` of `list` of `str`, *optional*): each example's options in order (A, B, ...).
        Needed to read letter answers; each reference must be one of its example's options.
    groups (`list` of `str`, *optional*): one group name per example, for a per-group breakdown.

Returns:
    accuracy (`float` or `None`), num_examples (`int`), num_correct (`int`), num_unmatched (`int`:
    predictions that picked no option; 0 without `options`), note (`str`, empty unless the accuracy is
    undefined), and with `groups`: per_group (`dict` of the same figures per group).

Example:
    >>> from icpt.metrics import load_metric
    >>> option_match = load_metric("option_match")
    >>> results = option_match.compute(
    ...     predictions=["(B)", "a dog", "Cat"],
    ...     references=["Dog", "Dog", "Dog"],
    ...     options=[["Cat", "Dog"], ["Dog", "Cat"], ["Dog", "Cat"]],
    ... )
    >>> results["accuracy"], results["num_unmatched"]
    (0.6666666666666666, 0)
"""

_CITATION = """
@inproceedings{rajpurkar2016squad,
  title={SQuAD: 100,000+ Questions for Machine Comprehension of Text},
  author={Rajpurkar, Pranav and Zhang, Jian and Lopyrev, Konstantin and Liang, Percy},
  booktitle={EMNLP},
  year={2016}
}
"""

_BARE_LETTER = re.compile(r"^\(?([a-z])\)?[.):]?$", re.IGNORECASE)
_MARKED_LETTER = re.compile(r"^(?:\(([a-z])\)|([a-z])[.):])\s*(.+)$", re.IGNORECASE | re.DOTALL)


def pick_option(prediction: str, options: list[str]) -> int | None:
    """Index of the option the prediction picks by the documented rules, or None."""
    normalized_options = [normalize_answer(option) for option in options]
    stripped = prediction.strip()
    bare = _BARE_LETTER.match(stripped)
    if bare:
        index = ord(bare.group(1).lower()) - ord("a")
        return index if index < len(options) else None
    marked = _MARKED_LETTER.match(stripped)
    if marked:
        index = ord((marked.group(1) or marked.group(2)).lower()) - ord("a")
        if index < len(options) and normalize_answer(marked.group(3)) == normalized_options[index]:
            return index
        return None
    text = normalize_answer(prediction)
    if text in normalized_options:
        return normalized_options.index(text)
    return None


def summarize(predictions: list[str], references: list[str], options: list[list[str]] | None) -> dict:
    """Accuracy of one set of examples."""
    num_correct = 0
    num_unmatched = 0
    for index, (prediction, reference) in enumerate(zip(predictions, references)):
        if options is None:
            num_correct += normalize_answer(prediction) == normalize_answer(reference)
            continue
        normalized_options = [normalize_answer(option) for option in options[index]]
        if normalize_answer(reference) not in normalized_options:
            raise ValueError(
                f"Example {index}: the reference {reference!r} is not one of its options {options[index]}: "
                "give the text of the correct option as the reference."
            )
        picked = pick_option(prediction, options[index])
        if picked is None:
            num_unmatched += 1
        else:
            num_correct += normalized_options[picked] == normalize_answer(reference)
    num_examples = len(predictions)
    return {
        "accuracy": num_correct / num_examples if num_examples else None,
        "num_examples": num_examples,
        "num_correct": int(num_correct),
        "num_unmatched": num_unmatched,
        "note": "" if num_examples else "no examples: accuracy is undefined (None)",
    }


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class OptionMatch(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, options=None, groups=None):
        if options is not None and len(options) != len(predictions):
            raise ValueError(
                f"`options` has {len(options)} entries but there are {len(predictions)} predictions: "
                "give one entry of `options` per prediction."
            )
        results = summarize(predictions, references, options)
        if groups is None:
            return results
        results["per_group"] = {
            group: summarize(
                [predictions[i] for i in indices],
                [references[i] for i in indices],
                None if options is None else [options[i] for i in indices],
            )
            for group, indices in group_indices(groups, len(predictions)).items()
        }
        return results
