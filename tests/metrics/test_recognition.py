"""The recognition metric (icpt/metrics/recognition/) on hand-made predictions scored by hand."""

import pytest

from icpt.metrics import load_metric


@pytest.fixture(scope="module")
def recognition():
    return load_metric("recognition", keep_in_memory=True)


# --------------------------------------------------------------------------------------- recognition


def test_recognition_known_values(recognition):
    # positives: yes (right), "Yes, it is." (right), No (wrong) -> 2/3
    # negatives: "no." (right), Yes (wrong), maybe (wrong, unparsed) -> 1/3
    results = recognition.compute(
        predictions=["Yes", "Yes, it is.", "No", "no.", "Yes", "maybe"],
        references=[True, True, True, False, False, False],
    )
    assert results["positive_accuracy"] == pytest.approx(2 / 3)
    assert results["negative_accuracy"] == pytest.approx(1 / 3)
    assert results["weighted_accuracy"] == pytest.approx(0.5)
    assert (results["num_positives"], results["num_negatives"], results["num_unparsed"]) == (3, 3, 1)
    assert results["note"] == ""


def test_recognition_weights_positives_and_negatives_equally(recognition):
    # 1 positive right, 9 negatives of which 3 right: plain accuracy 0.4, weighted 0.5 * 1 + 0.5 * 1/3
    results = recognition.compute(predictions=["yes"] + ["no"] * 3 + ["yes"] * 6, references=[True] + [False] * 9)
    assert results["weighted_accuracy"] == pytest.approx(0.5 + 0.5 / 3)


def test_recognition_reads_only_the_first_word(recognition):
    predictions = ["YES!", "yes it is <bo>", "The answer is yes", "Yeah", "", "  no  ", "No, it is not.", "Not really"]
    references = [True, True, True, True, True, False, False, False]
    results = recognition.compute(predictions=predictions, references=references)
    assert results["positive_accuracy"] == pytest.approx(2 / 5)
    assert results["negative_accuracy"] == pytest.approx(2 / 3)
    assert results["num_unparsed"] == 4  # "The answer is yes", "Yeah", "", "Not really"


def test_recognition_all_right_and_all_wrong(recognition):
    references = [True, False, True, False]
    right = recognition.compute(predictions=["Yes", "No", "yes.", "no"], references=references)
    wrong = recognition.compute(predictions=["No", "Yes", "no", "yes"], references=references)
    assert (right["positive_accuracy"], right["negative_accuracy"], right["weighted_accuracy"]) == (1.0, 1.0, 1.0)
    assert (wrong["positive_accuracy"], wrong["negative_accuracy"], wrong["weighted_accuracy"]) == (0.0, 0.0, 0.0)


def test_recognition_empty_answers_are_wrong_for_both(recognition):
    results = recognition.compute(predictions=["", ""], references=[True, False])
    assert results["weighted_accuracy"] == 0.0
    assert results["num_unparsed"] == 2


def test_recognition_without_examples_says_so(recognition):
    results = recognition.compute(predictions=[], references=[])
    assert results["positive_accuracy"] is None and results["negative_accuracy"] is None
    assert results["weighted_accuracy"] is None
    assert "no positive and no negative examples" in results["note"]


def test_recognition_without_negatives_or_positives_is_undefined_not_nan(recognition):
    only_positives = recognition.compute(predictions=["yes", "no"], references=[True, True])
    assert only_positives["positive_accuracy"] == 0.5
    assert only_positives["negative_accuracy"] is None and only_positives["weighted_accuracy"] is None
    assert "no negative examples" in only_positives["note"]
    only_negatives = recognition.compute(predictions=["no"], references=[False])
    assert only_negatives["negative_accuracy"] == 1.0 and only_negatives["positive_accuracy"] is None
    assert "no positive examples" in only_negatives["note"]


def test_recognition_per_group_and_macro_average(recognition):
    results = recognition.compute(
        predictions=["yes", "no", "yes", "yes", "no", "no"],
        references=[True, False, True, False, True, False],
        groups=["<bo>", "<bo>", "<mia>", "<mia>", "<kiki>", "<kiki>"],
    )
    per_group = results["per_group"]
    assert per_group["<bo>"]["weighted_accuracy"] == 1.0
    assert (per_group["<mia>"]["positive_accuracy"], per_group["<mia>"]["negative_accuracy"]) == (1.0, 0.0)
    assert (per_group["<kiki>"]["positive_accuracy"], per_group["<kiki>"]["negative_accuracy"]) == (0.0, 1.0)
    # a tie: <mia> and <kiki> fail on opposite sides and score the same
    assert per_group["<mia>"]["weighted_accuracy"] == per_group["<kiki>"]["weighted_accuracy"] == 0.5
    assert results["macro_weighted_accuracy"] == pytest.approx((1.0 + 0.5 + 0.5) / 3)
    assert results["weighted_accuracy"] == pytest.approx(0.5 * 2 / 3 + 0.5 * 2 / 3)


def test_recognition_macro_average_skips_undefined_groups(recognition):
    results = recognition.compute(
        predictions=["yes", "no", "yes"], references=[True, False, True], groups=["<bo>", "<bo>", "<mia>"]
    )
    assert results["per_group"]["<mia>"]["weighted_accuracy"] is None
    assert results["macro_weighted_accuracy"] == 1.0


def test_recognition_rejects_groups_of_the_wrong_length(recognition):
    with pytest.raises(ValueError, match="one group name per prediction"):
        recognition.compute(predictions=["yes", "no"], references=[True, False], groups=["<bo>"])
