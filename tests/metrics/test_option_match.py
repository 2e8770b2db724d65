"""The option_match metric (icpt/metrics/option_match/) on hand-made predictions scored by hand."""

import pytest

from icpt.metrics import load_metric


@pytest.fixture(scope="module")
def option_match():
    return load_metric("option_match", keep_in_memory=True)


# -------------------------------------------------------------------------------------- option_match


def test_option_match_reads_letters_and_texts(option_match):
    options = [["Cat", "Dog"]] * 9
    predictions = ["B", "(b)", "B.", "b)", "B: Dog", "(B) dog", "the dog.", "A dog", "DOG!"]
    results = option_match.compute(predictions=predictions, references=["Dog"] * 9, options=options)
    assert results["accuracy"] == 1.0
    assert (results["num_examples"], results["num_correct"], results["num_unmatched"]) == (9, 9, 0)


def test_option_match_all_wrong_and_unmatched(option_match):
    options = [["Cat", "Dog"]] * 7
    # "A", "Cat": the wrong option; "C": out of range; "(A) Dog": letter and text disagree;
    # "Dog or cat": names both; "": empty; "Horse": neither
    predictions = ["A", "Cat", "C", "(A) Dog", "Dog or cat", "", "Horse"]
    results = option_match.compute(predictions=predictions, references=["Dog"] * 7, options=options)
    assert results["accuracy"] == 0.0
    assert results["num_unmatched"] == 5


def test_option_match_without_options_compares_text_only(option_match):
    results = option_match.compute(predictions=["The Dog", "A", "cat"], references=["dog", "Dog", "Dog"])
    assert results["accuracy"] == pytest.approx(1 / 3)
    assert results["num_unmatched"] == 0


def test_option_match_equal_options_are_one_answer(option_match):
    # Yo'LLaVA's text-only file offers {"A": "No", "B": "No"} twice
    results = option_match.compute(
        predictions=["A", "B", "no", "yes"], references=["No"] * 4, options=[["No", "No"]] * 4
    )
    assert results["accuracy"] == 0.75
    assert results["num_unmatched"] == 1


def test_option_match_empty_predictions(option_match):
    empty = option_match.compute(predictions=[], references=[])
    assert empty["accuracy"] is None and empty["num_examples"] == 0
    assert "no examples" in empty["note"]
    blank = option_match.compute(predictions=["", " "], references=["Dog", "Cat"], options=[["Dog", "Cat"]] * 2)
    assert blank["accuracy"] == 0.0 and blank["num_unmatched"] == 2


def test_option_match_per_group(option_match):
    results = option_match.compute(
        predictions=["A", "B", "A", "A"],
        references=["Red", "Blue", "Blue", "Red"],
        options=[["Red", "Blue"], ["Red", "Blue"], ["Red", "Blue"], ["Blue", "Red"]],
        groups=["single", "single", "multi", "multi"],
    )
    assert results["per_group"]["single"]["accuracy"] == 1.0
    assert results["per_group"]["multi"]["accuracy"] == 0.0
    assert results["accuracy"] == 0.5


def test_option_match_rejects_a_reference_outside_its_options(option_match):
    with pytest.raises(ValueError, match="not one of its options"):
        option_match.compute(predictions=["A"], references=["Horse"], options=[["Cat", "Dog"]])


def test_option_match_rejects_options_of_the_wrong_length(option_match):
    with pytest.raises(ValueError, match="one entry of `options` per prediction"):
        option_match.compute(predictions=["A", "B"], references=["Cat", "Dog"], options=[["Cat", "Dog"]])
