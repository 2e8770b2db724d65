"""The name_accuracy metric (icpt/metrics/name_accuracy/) on hand-made answers scored by hand."""

import pytest

from icpt.metrics import load_metric


@pytest.fixture(scope="module")
def name_accuracy():
    return load_metric("name_accuracy", keep_in_memory=True)


def test_name_accuracy_known_values(name_accuracy):
    results = name_accuracy.compute(
        predictions=[
            "<bo> and <mia> on a sofa.",  # both asked, both present, both named: 2 of 2
            "Bo naps while mia's toy lies nearby.",  # bare names, any case, possessive; <mia> is absent: 1 of 2
            "A dog on a boat near Kiki.",  # "boat" is not "bo" (present, missed); kiki named, absent: 1 of 3
            "An empty room.",  # <bo> absent and not named: 1 of 1
            "none",  # a presence list naming nothing: <bo> present, missed: 0 of 1
        ],
        references=[["<bo>", "<mia>"], ["bo"], ["<bo>"], [], ["<bo>"]],
        asked=[["<bo>", "<mia>"], ["bo", "<mia>"], ["<bo>", "<mia>", "<kiki>"], ["<bo>"], ["<bo>"]],
    )
    assert results["per_answer"] == pytest.approx([1.0, 0.5, 1 / 3, 1.0, 0.0])
    assert results["accuracy"] == pytest.approx((1.0 + 0.5 + 1 / 3 + 1.0 + 0.0) / 5)
    assert (results["num_answers"], results["num_without_names"]) == (5, 0)


def test_naming_every_concept_asked_scores_the_share_present_and_naming_none_the_share_absent(name_accuracy):
    """The guessing floor the metric is chosen for: no answer that ignores the photo beats the more frequent case."""
    references, asked = [["<a>"], [], ["<a>", "<b>"]], [["<a>", "<b>"], ["<a>", "<b>"], ["<a>", "<b>"]]
    every = name_accuracy.compute(predictions=["<a>, <b>"] * 3, references=references, asked=asked)
    none = name_accuracy.compute(predictions=["none"] * 3, references=references, asked=asked)
    assert every["accuracy"] == pytest.approx(0.5) and none["accuracy"] == pytest.approx(0.5)
    right = name_accuracy.compute(predictions=["<a>", "none", "<b> and <a>"], references=references, asked=asked)
    assert right["accuracy"] == 1.0


def test_name_accuracy_empty_and_without_names(name_accuracy):
    empty = name_accuracy.compute(predictions=[], references=[], asked=[])
    assert empty["accuracy"] is None and empty["per_answer"] == []
    assert "undefined" in empty["note"]
    results = name_accuracy.compute(predictions=["<bo> sleeps", "a street"], references=[["<bo>"], []],
                                    asked=[["<bo>"], []])
    assert results["per_answer"] == [1.0, None]
    assert results["accuracy"] == 1.0 and results["num_without_names"] == 1


def test_a_present_name_that_was_not_asked_is_an_error(name_accuracy):
    with pytest.raises(ValueError, match=r"Present names \['<kiki>'\] are not among the asked names"):
        name_accuracy.compute(predictions=["<kiki>"], references=[["<kiki>"]], asked=[["<bo>"]])
    with pytest.raises(ValueError, match="concept name '<>' is empty"):
        name_accuracy.compute(predictions=["x"], references=[[]], asked=[["<>"]])


def test_name_accuracy_per_group(name_accuracy):
    results = name_accuracy.compute(
        predictions=["<bo>", "<bo> and a cat", "<bo> and <mia>"],
        references=[["<bo>"], ["<bo>", "<mia>"], ["<bo>", "<mia>"]],
        asked=[["<bo>"], ["<bo>", "<mia>"], ["<bo>", "<mia>"]],
        groups=["single", "multi", "multi"],
    )
    assert results["per_group"]["single"]["accuracy"] == 1.0
    assert results["per_group"]["multi"]["accuracy"] == pytest.approx(0.75)
