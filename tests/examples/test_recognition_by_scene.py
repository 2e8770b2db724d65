"""examples/recognition_by_scene.py: recognition split by what the query shows, and d′, from `icpt eval` outcomes."""

import json

from helpers.examples import run_example
from scipy.stats import norm


def write_run(folder, answers, look_alike=()):
    """outcomes.jsonl of a run: answers maps method -> list of (positive, correct) per question; the questions
    numbered in `look_alike` carry that split."""
    folder.mkdir()
    lines = []
    for method, rows in answers.items():
        for index, (positive, correct) in enumerate(rows):
            lines.append({"episode": f"s0-{index:05d}", "question_id": f"q{index}", "task": "recognition",
                          "splits": ["look_alike"] if index in look_alike else [], "method": method,
                          "answer": "Yes" if positive else "No",
                          "prediction": "yes" if positive == correct else "no", "score": float(correct),
                          "positive": positive, "correct": correct})
    lines.append({"question_id": "g0", "task": "generic", "method": "icpt", "correct": True, "positive": False})
    (folder / "outcomes.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return folder


# 8 questions: 4 positives, then 2 negatives the name alone rejects (nothing in view), then 2 it accepts
KINDS = [True] * 4 + [False] * 4
NAME_ONLY = [(p, c) for p, c in zip(KINDS, [True] * 4 + [True, True, False, False])]


def test_groups_and_d_prime(tmp_path):
    icpt = [(p, c) for p, c in zip(KINDS, [True, True, True, False, True, True, True, False])]
    before = write_run(tmp_path / "before", {"name_only_adapted": NAME_ONLY, "icpt": icpt})
    after_icpt = [(p, c) for p, c in zip(KINDS, [True, True, False, False, True, False, True, True])]
    after = write_run(tmp_path / "after", {"name_only_adapted": NAME_ONLY, "icpt": after_icpt})
    result = run_example("recognition_by_scene.py", before, after, "--methods", "icpt", "--resamples", "50",
                         cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "8 questions: 4 positives, 2 negatives with nothing in view, 2 with something in view" in result.stdout
    rows = [line.split(" | ") for line in result.stdout.splitlines() if line.startswith(f"| {before}")
            or line.startswith(f"| {after}")]
    # before: positives 3/4, nothing in view 2/2, something in view 1/2
    assert rows[0][2:5] == ["0.750", "1.000", "0.500"]
    assert float(rows[0][5]) == round(norm.ppf(0.75) - norm.ppf(0.5), 2)
    # after: positives 2/4, nothing in view 1/2, something in view 2/2 (clipped to 0.999)
    assert rows[1][2:5] == ["0.500", "0.500", "1.000"]
    expected = norm.ppf(0.5) - norm.ppf(1e-3)
    assert float(rows[1][5]) == round(expected, 2)
    assert rows[1][6].startswith(f"{expected - (norm.ppf(0.75) - norm.ppf(0.5)):+.2f} [")


def test_clear_errors(tmp_path):
    without_marker = write_run(tmp_path / "run", {"icpt": [(True, True), (False, True)]})
    result = run_example("recognition_by_scene.py", without_marker, cwd=tmp_path)
    assert result.returncode != 0 and "name_only_adapted" in result.stderr
    result = run_example("recognition_by_scene.py", tmp_path / "nowhere", cwd=tmp_path)
    assert result.returncode != 0 and "pass the output folder of an `icpt eval` run" in result.stderr
    partial = write_run(tmp_path / "partial", {"name_only_adapted": NAME_ONLY, "icpt": [(True, True)]})
    result = run_example("recognition_by_scene.py", partial, "--methods", "icpt", cwd=tmp_path)
    assert result.returncode != 0 and "Not answered on every question of every run: icpt" in result.stderr


def test_look_alikes_and_the_rest(tmp_path):
    # questions 3 (a positive) and 6, 7 (negatives with something in view: the twin) are look-alikes
    icpt = [(p, c) for p, c in zip(KINDS, [True, True, True, False, True, True, True, False])]
    run = write_run(tmp_path / "run", {"name_only_adapted": NAME_ONLY, "icpt": icpt}, look_alike={3, 6, 7})
    result = run_example("recognition_by_scene.py", run, "--methods", "icpt", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "3 look-alike questions, 5 others" in result.stdout
    row = next(line for line in result.stdout.splitlines() if line.startswith(f"| {run} | icpt | 0.000 / 0.500"))
    # look-alikes: positive 3 wrong, negatives 6 right and 7 wrong; others: positives 3/3, negatives 4, 5 right
    assert row.strip("| ").split(" | ")[2:] == ["0.000 / 0.500", "0.250", "1.000 / 1.000", "1.000"]
