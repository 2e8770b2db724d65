"""Scoring (icpt/evaluation/scoring.py): hand-made answers scored by hand, and two runs compared."""

import json
from types import SimpleNamespace

import pytest

from icpt.evaluation.scoring import (
    METRICS, SPLITS, Scorer, cells, compare_runs, guess_floor, is_positive, question_score,
)


def episode(task, answer, options=(), present=(), tags=(), target="<a>", image=True, asked=()):
    return SimpleNamespace(task=task, answer=answer, options=list(options), present=list(present), tags=list(tags),
                           target=target, image_value={"path": "q.png"} if image else None,
                           named_concepts=[SimpleNamespace(name=name) for name in asked])


@pytest.fixture(scope="module")
def scorer():
    return Scorer()


def test_scores_on_hand_made_answers(scorer):
    episodes = [
        episode("recognition", "Yes", target="<a>"),
        episode("recognition", "Yes", target="<b>", tags=["environment_shift"]),
        episode("recognition", "No", target="<a>", tags=["multi_concept"]),
        episode("recognition", "No", target="<b>", tags=["look_alike"]),
        episode("vqa", "Dog", options=["Cat", "Dog"], tags=["environment_shift"]),
        episode("text_qa", "red", options=["red", "blue"], image=False),
        episode("presence", "<a>, <b>", present=["<a>", "<b>"], asked=["<a>", "<b>", "<c>"], tags=["multi_concept"]),
        episode("presence", "<a>, <b>, <c>", present=["<a>", "<b>", "<c>"], asked=["<a>", "<b>", "<c>", "<d>"],
                tags=["multi_concept"]),
        episode("presence", "<c>", present=["<c>"], asked=["<b>", "<c>"]),
        episode("attribute", "a hat"),
        episode("caption", "a photo of <bo> and <mia>.", present=["<bo>", "<mia>"], asked=["<bo>", "<mia>"],
                tags=["multi_concept"]),
        episode("caption", "a photo of a hat.", present=[], asked=["<bo>", "<mia>"]),
    ]
    predictions = ["Yes, it is.", "no", "No.", "Maybe", "(B)", "blue", "<b> and <a>", "<b>, <d>", "None.", "A hat.",
                   "<bo> on a sofa", "Mia in a hat"]
    scores = scorer.score(episodes, predictions)
    overall = scores["all"]
    assert set(overall) == set(METRICS) and set(SPLITS) == set(scores)
    assert (overall["recognition_positive"], overall["recognition_negative"]) == (0.5, 0.5)
    assert overall["recognition_weighted"] == 0.5
    assert (overall["vqa"], overall["text_qa"], overall["attribute"]) == (1.0, 0.0, 1.0)
    # presence, per concept asked: the exact set 3/3; <b> listed, <a> <c> missed, <d> listed but absent 1/4;
    # "none" leaves out the absent <b> and misses <c> 1/2
    assert overall["presence_names"] == pytest.approx((1.0 + 0.25 + 0.5) / 3)
    assert scores["multi_concept"]["presence_names"] == pytest.approx((1.0 + 0.25) / 2)
    # captions: <bo> named, <mia> missed 1/2; nothing present and Mia named 1/2
    assert overall["caption_names"] == 0.5
    shifted = scores["environment_shift"]
    assert (shifted["recognition_positive"], shifted["recognition_negative"], shifted["vqa"]) == (0.0, None, 1.0)
    assert shifted["recognition_weighted"] is None and shifted["text_qa"] is None
    assert scores["look_alike"]["recognition_negative"] == 0.0

    # the per-question scores the harness bootstraps give exactly the evaluate modules' figures
    outcomes = [{"question_id": str(i), "task": e.task, "splits": e.tags, "score": question_score(e, p),
                 "positive": is_positive(e)} for i, (e, p) in enumerate(zip(episodes, predictions))]
    per_question = cells(outcomes)
    for split in SPLITS:
        for metric in METRICS:
            value, expected = per_question[split][metric], scores[split][metric]
            assert (value["mean"] is None) == (expected is None), (split, metric)
            assert expected is None or value["mean"] == pytest.approx(expected), (split, metric)
            if value["low"] is not None:
                assert 0.0 <= value["low"] <= value["mean"] <= value["high"] <= 1.0


def test_compare_runs_pairs_two_runs_on_their_shared_questions(tmp_path):
    """Two backbones' runs: the difference is taken question by question, over the questions both asked."""

    def write(folder, predictions):
        folder.mkdir()
        rows = [{"question_id": f"q{i}", "method": "raw_references", "task": "vqa", "splits": ["look_alike"] * (i % 2),
                 "score": float(correct), "positive": None} for i, correct in predictions.items()]
        (folder / "outcomes.jsonl").write_text("\n".join(json.dumps(row) for row in rows))

    write(tmp_path / "before", {i: i < 10 for i in range(40)})  # 10 of 40 right
    write(tmp_path / "after", {i: i < 30 for i in range(44)})  # 30 of the same 40 right (and 4 more questions)
    [row] = compare_runs(tmp_path / "before", tmp_path / "after")
    assert (row["method"], row["metric"]) == ("raw_references", "vqa")
    assert row["before"]["mean"] == 0.25 and row["after"]["mean"] == 0.75  # on the 40 shared questions only
    assert row["difference"]["difference"] == 0.5 and row["difference"]["low"] > 0.3
    assert row["difference"]["p_value"] < 0.01
    [odd] = compare_runs(tmp_path / "before", tmp_path / "after", split="look_alike")
    assert odd["before"]["n"] == 20
    with pytest.raises(ValueError, match="No method in both runs among icpt"):
        compare_runs(tmp_path / "before", tmp_path / "after", methods=["icpt"])
    with pytest.raises(FileNotFoundError, match="pass an output folder of `icpt eval`"):
        compare_runs(tmp_path, tmp_path / "after")


def test_the_floor_of_presence_and_captions_is_naming_every_concept_asked_or_none():
    """An answer that looks at no photo can name every concept asked (it scores the share present) or none (the
    share absent): the harness counts presence and captions measurable only above the better of the two."""
    episodes = [
        episode("presence", "<a>", present=["<a>"], asked=["<a>", "<b>", "<c>"]),  # all named: 1/3, none: 2/3
        episode("presence", "<a>, <b>", present=["<a>", "<b>"], asked=["<a>", "<b>"]),  # all: 1, none: 0
        episode("presence", "none", present=[], asked=["<a>", "<b>"]),  # all: 0, none: 1
        episode("caption", "a photo of <a>.", present=["<a>"], asked=["<a>"]),  # all: 1
        episode("caption", "a photo of a hat.", present=[], asked=["<b>", "<c>"]),  # all: 0
        episode("caption", "a photo of <a>.", present=["<a>"], asked=["<a>", "<c>"]),  # all: 1/2
        episode("recognition", "Yes", asked=["<a>"]),
    ]
    assert guess_floor(episodes, "presence") == pytest.approx(max((1 / 3 + 1 + 0) / 3, (2 / 3 + 0 + 1) / 3))
    assert guess_floor(episodes, "caption") == pytest.approx(0.5)
    assert guess_floor(episodes, "recognition") == 0.5
    assert guess_floor(episodes, "vqa") is None
