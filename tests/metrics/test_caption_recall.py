"""The caption_recall metric (icpt/metrics/caption_recall/) on hand-made predictions scored by hand."""

import pytest

from icpt.metrics import load_metric


@pytest.fixture(scope="module")
def caption_recall():
    return load_metric("caption_recall", keep_in_memory=True)


# ------------------------------------------------------------------------------------ caption_recall


def test_caption_recall_known_values(caption_recall):
    results = caption_recall.compute(
        predictions=[
            "<bo> and <mia> on a sofa.",  # both, with brackets
            "Bo naps while mia's toy lies nearby.",  # both, bare, any case, possessive
            "A dog on a boat near Kiki.",  # "boat" is not "bo": 1 of 3
            "An empty room.",  # none
        ],
        references=[["<bo>", "<mia>"], ["bo", "<mia>"], ["<bo>", "<mia>", "<kiki>"], ["<bo>"]],
    )
    assert results["per_caption"] == pytest.approx([1.0, 1.0, 1 / 3, 0.0])
    assert results["recall"] == pytest.approx((1.0 + 1.0 + 1 / 3 + 0.0) / 4)
    assert (results["num_captions"], results["num_without_names"]) == (4, 0)


def test_caption_recall_all_right_and_all_wrong(caption_recall):
    references = [["<bo>"], ["<bo>", "<mia>"]]
    assert caption_recall.compute(predictions=["<bo>.", "mia, bo"], references=references)["recall"] == 1.0
    assert caption_recall.compute(predictions=["a dog", "two dogs"], references=references)["recall"] == 0.0


def test_caption_recall_empty(caption_recall):
    empty = caption_recall.compute(predictions=[], references=[])
    assert empty["recall"] is None and empty["per_caption"] == []
    assert "recall is undefined" in empty["note"]
    blank = caption_recall.compute(predictions=[""], references=[["<bo>"]])
    assert blank["recall"] == 0.0


def test_caption_recall_skips_captions_without_names(caption_recall):
    results = caption_recall.compute(predictions=["<bo> sleeps", "a street"], references=[["<bo>"], []])
    assert results["per_caption"] == [1.0, None]
    assert results["recall"] == 1.0 and results["num_without_names"] == 1


def test_caption_recall_per_group(caption_recall):
    results = caption_recall.compute(
        predictions=["<bo>", "<bo> and a cat", "<bo> and <mia>"],
        references=[["<bo>"], ["<bo>", "<mia>"], ["<bo>", "<mia>"]],
        groups=["single", "multi", "multi"],
    )
    assert results["per_group"]["single"]["recall"] == 1.0
    assert results["per_group"]["multi"]["recall"] == pytest.approx(0.75)
