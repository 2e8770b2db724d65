"""The word_f1 metric (icpt/metrics/word_f1/) on hand-made predictions scored by hand."""

import pytest

from icpt.metrics import load_metric


# ------------------------------------------------------------------------------------ word_f1


def test_word_f1_known_values():
    word_f1 = load_metric("word_f1", keep_in_memory=True)
    results = word_f1.compute(
        predictions=["A red mug.", "a red round mug", "a dog", "", ""],
        references=["the red mug", "a red mug with dots", "a cat", "", "a cat"],
    )
    # "red round mug" vs "red mug with dots": 2 shared, precision 2/3, recall 2/4 -> F1 4/7
    assert results["per_answer"] == pytest.approx([1.0, 4 / 7, 0.0, 1.0, 0.0])
    assert results["f1"] == pytest.approx((1.0 + 4 / 7 + 0.0 + 1.0 + 0.0) / 5)
    assert results["num_answers"] == 5
