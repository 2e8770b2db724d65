"""Word F1: the SQuAD token-overlap score of a free answer against its reference."""

from collections import Counter

import datasets
import evaluate

from icpt.metrics.normalization import normalize_answer


_DESCRIPTION = """
Word F1, SQuAD's rule for free answers: both texts are normalized (lower case, no punctuation, no
articles), split into words, and scored by the harmonic mean of the precision and recall of the words
they share (counted with multiplicity). Two empty answers score 1, one empty answer 0. The mean over
answers is reported, with the per-answer scores.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): the generated answers.
    references (`list` of `str`): the reference answers.

Returns:
    f1 (`float` or `None` without answers), per_answer (`list` of `float`), num_answers (`int`).

Example:
    >>> from icpt.metrics import load_metric
    >>> word_f1 = load_metric("word_f1")
    >>> results = word_f1.compute(predictions=["A red mug.", "a dog"], references=["the red mug", "a cat"])
    >>> results["f1"], results["per_answer"]
    (0.5, [1.0, 0.0])
"""

_CITATION = """
@inproceedings{rajpurkar2016squad,
  title={SQuAD: 100,000+ Questions for Machine Comprehension of Text},
  author={Rajpurkar, Pranav and Zhang, Jian and Lopyrev, Konstantin and Liang, Percy},
  booktitle={EMNLP},
  year={2016}
}
"""


def word_f1(prediction: str, reference: str) -> float:
    """SQuAD word F1 of one answer."""
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not predicted or not expected:
        return float(predicted == expected)
    shared = sum((Counter(predicted) & Counter(expected)).values())
    if shared == 0:
        return 0.0
    precision, recall = shared / len(predicted), shared / len(expected)
    return 2 * precision * recall / (precision + recall)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class WordF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references):
        scores = [word_f1(prediction, reference) for prediction, reference in zip(predictions, references)]
        return {"f1": sum(scores) / len(scores) if scores else None, "per_answer": scores, "num_answers": len(scores)}
