"""examples/either_or_by_attribute.py: text either/or answers of an `icpt eval` run grouped by the attribute asked."""

import json

from helpers.examples import run_example


def write_run(folder, outcomes):
    folder.mkdir()
    (folder / "outcomes.jsonl").write_text("".join(json.dumps(o) + "\n" for o in outcomes))
    return folder


def outcome(method, question, answer, score, task="text_qa"):
    return {"method": method, "task": task, "question": question, "answer": answer, "score": score}


def test_shares_per_attribute_and_method(tmp_path):
    run = write_run(tmp_path / "run", [
        outcome("icpt", "Is <w1> pink or orange?", "pink", 1.0),
        outcome("icpt", "Is <w2> a circle or an oval?", "an oval", 0.0),
        outcome("icpt", "Is <w3> a square or a triangle?", "a square", 1.0),
        outcome("icpt", "Does <w4> have a dot or a bar?", "a bar", 1.0),
        outcome("name_only", "Is <w1> pink or orange?", "pink", 0.0),
        outcome("name_only", "Is <w2> a circle or an oval?", "an oval", 0.0),
        outcome("icpt", "Can you see <w1> in this photo?", "Yes", 1.0, task="recognition"),
    ])
    result = run_example("either_or_by_attribute.py", run, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "| attribute | questions | icpt | name_only |" in lines
    assert "| colour | 1 | 1.00 | 0.00 |" in lines
    assert "| shape | 2 | 0.50 | 0.00 |" in lines
    assert "| mark | 1 | 1.00 | – |" in lines
    assert "| all | 4 | 0.75 | 0.00 |" in lines
    assert not any(line.startswith(("| side", "| pattern")) for line in lines)


def test_clear_errors(tmp_path):
    result = run_example("either_or_by_attribute.py", tmp_path / "nothing", cwd=tmp_path)
    assert result.returncode != 0 and "outcomes.jsonl does not exist" in result.stderr
    run = write_run(tmp_path / "run", [outcome("icpt", "Is <w1> pink or orange?", "pink", 1.0)])
    result = run_example("either_or_by_attribute.py", run, "--methods", "icpt,magic", cwd=tmp_path)
    assert result.returncode != 0 and "no text either/or answers of magic" in result.stderr
    other = write_run(tmp_path / "other", [outcome("icpt", "Which colour does <bo> prefer, red or blue?", "red", 1.0)])
    result = run_example("either_or_by_attribute.py", other, cwd=tmp_path)
    assert result.returncode != 0 and "not one of the world's wordings" in result.stderr
