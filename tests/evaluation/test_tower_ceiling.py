"""The tower's recognition ceiling (icpt.evaluation.tower_ceiling): scores, the verifier, the swap test, pairing."""

import json
import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from icpt.commands.arguments import ArgumentParser
from icpt.evaluation.tower_ceiling import (
    RecognitionVerifier,
    TowerCeilingArguments,
    collate,
    compared_methods,
    paired_difference,
    recognition_scores,
    swap_test,
    tower_recognition_ceiling,
)


def row(identity: float, positive: bool, references: int = 2, tags=()):
    """An episode whose features are constant: the references show `identity`, the query shows it when positive."""
    shown = identity if positive else identity + 100
    return {"references": torch.full((references, 4, 3), identity), "query": torch.full((4, 3), shown),
            "positive": positive, "tags": list(tags), "description": f"identity {identity}"}


class SameIdentity(torch.nn.Module):
    """A verifier that says "yes" exactly when the query's features equal the (unpadded) references'."""

    def forward(self, references, reference_index, padding, query):
        kept = (~padding).unsqueeze(-1).float()
        mean = (references * kept).sum((1, 2)) / (kept.sum((1, 2)) * references.shape[-1])
        return 0.5 - (mean - query.mean((1, 2))).abs()


def test_recognition_scores_give_the_accuracies_and_d_prime():
    yes = np.array([True, True, True, False, True, False, False, False])
    positive = np.array([True] * 4 + [False] * 4)
    scores = recognition_scores(yes, positive)
    assert scores["positive"] == 0.75 and scores["negative"] == 0.75 and scores["weighted"] == 0.75
    assert scores["d_prime"] == pytest.approx(norm.ppf(0.75) - norm.ppf(0.25))
    perfect = recognition_scores(positive.copy(), positive)  # rates of 1 and 0 are kept half a question away
    assert perfect["d_prime"] == pytest.approx(norm.ppf(1 - 0.5 / 4) - norm.ppf(0.5 / 4))
    assert recognition_scores(yes[:4], positive[:4])["d_prime"] is None  # no negatives: nothing to discriminate


def test_the_verifier_ignores_padded_references():
    torch.manual_seed(0)
    verifier = RecognitionVerifier(feature_size=3, patches=4, width=16, blocks=1).eval()
    one, three = row(1.0, True, references=1), row(2.0, False, references=3)
    one["references"] = torch.randn(1, 4, 3)
    alone = verifier(*collate([one])[:4])
    beside = verifier(*collate([one, three])[:4])  # padded to three references
    torch.testing.assert_close(beside[0], alone[0])


def test_swap_test_gives_each_positive_another_identitys_references():
    rows = [row(float(i), positive=i % 3 != 0) for i in range(12)]
    swap = swap_test(SameIdentity(), rows, seed=0)
    assert swap["positives"] == 8
    assert swap["yes_before"] == 1.0 and swap["yes_after"] == 0.0 and swap["changed"] == 1.0


def write_outcomes(folder, questions, method="icpt", correct=True):
    lines = [{"episode": f"s0-{i:05d}", "method": method, "task": "recognition", "question": q, "correct": correct}
             for i, q in enumerate(questions)]
    (folder / "outcomes.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_comparison_runs_must_have_asked_the_same_questions(tmp_path):
    questions = ["Can you see <a> in this photo?", "Can you see <b> in this photo?"]
    write_outcomes(tmp_path, questions)
    assert compared_methods(str(tmp_path), ["icpt"], questions, seed=0)["icpt"].tolist() == [True, True]
    with pytest.raises(ValueError, match="other questions"):
        compared_methods(str(tmp_path), ["icpt"], questions[::-1], seed=0)
    with pytest.raises(ValueError, match="no recognition answers of 'raw_references'"):
        compared_methods(str(tmp_path), ["raw_references"], questions, seed=0)


def test_paired_difference_of_weighted_recognition():
    positive = np.array([True, True, False, False] * 10)
    verifier_yes = positive.copy()  # always right
    other_correct = np.array([True, False, True, False] * 10)  # half of each kind right
    difference = paired_difference(verifier_yes, other_correct, positive, seed=0, resamples=200)
    assert difference["difference"] == pytest.approx(0.5)
    assert difference["low"] <= 0.5 <= difference["high"] and difference["low"] > 0.3


def test_the_study_runs_on_the_embedded_default(tmp_path, capsys):
    output = tmp_path / "ceiling.json"
    report = tower_recognition_ceiling(TowerCeilingArguments(train_episodes=16, epochs=1, batch_size=8, questions=24,
                                                             min_per_split=2, threads=1, output=str(output)))
    assert report["verifier"]["all"]["questions"] == 24
    assert report["swap"]["positives"] == 12
    assert len(report["training_loss_per_epoch"]) == 1 and math.isfinite(report["training_loss_per_epoch"][0])
    assert json.loads(output.read_text())["verifier"] == report["verifier"]
    printed = capsys.readouterr().out
    assert "| verifier | all | 24 |" in printed and "Swap test (the verifier)" in printed


@pytest.mark.parametrize("line, expected", [
    ("--compare-run outputs/eval --compare-methods icpt raw_references_adapted --output outputs/tower_ceiling.json",
     {"compare_run": "outputs/eval", "compare_methods": ["icpt", "raw_references_adapted"],
      "output": "outputs/tower_ceiling.json"}),
    ("--train-episodes 8000 --epochs 8 --layers -1", {"train_episodes": 8000, "epochs": 8, "layers": [-1]}),
])
def test_the_documented_command_lines_parse(line, expected):
    (args,) = ArgumentParser(TowerCeilingArguments).parse(line.split())
    assert {name: getattr(args, name) for name in expected} == expected
    with pytest.raises(SystemExit):
        ArgumentParser(TowerCeilingArguments).parse(line.split() + ["--no-such-option"])
