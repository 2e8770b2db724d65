"""Writing a run (icpt/evaluation/report.py): the files of an output folder, the docs page and its plots, and the
page's summary of the claims. The tables and plots themselves are scoring's and plots' (stubbed here)."""

import json

import pytest

from icpt.evaluation import report


@pytest.fixture
def stubbed(monkeypatch):
    monkeypatch.setattr(report, "render_markdown", lambda results, plots_prefix: f"TABLES plots at {plots_prefix!r}\n")
    for name in ("plot_accuracy_vs_prompt_tokens", "plot_accuracy_vs_references"):
        monkeypatch.setattr(report, name, lambda results, path: path.write_bytes(b"png"))


def run_results(**extra):
    return {"backbone": "icpt/default/backbone", "outcomes": "outcomes.jsonl", "variance": "one seed",
            "wall_seconds": 90, "command": "icpt eval --preset default",
            "settings": {"device": "cpu", "threads": 1, "ttt_rows": 16, "ttt_steps": 30, "ceiling_margin": 0.05},
            **extra}


def test_write_results_writes_every_file(stubbed, tmp_path):
    results = run_results()
    outcomes = [{"question": "q1", "correct": True}, {"question": "q2", "correct": False}]
    folder = report.write_results(results, outcomes, tmp_path / "run")
    assert folder == tmp_path / "run"
    assert sorted(p.name for p in folder.iterdir()) == ["accuracy_vs_prompt_tokens.png", "accuracy_vs_references.png",
                                                        "outcomes.jsonl", "results.json", "results.md"]
    assert [json.loads(line) for line in (folder / "outcomes.jsonl").read_text().splitlines()] == outcomes
    assert json.loads((folder / "results.json").read_text()) == results
    assert results["plots"] == {"accuracy_vs_prompt_tokens": "accuracy_vs_prompt_tokens.png",
                                "accuracy_vs_references": "accuracy_vs_references.png"}
    page = (folder / "results.md").read_text()
    assert page.startswith("# ICPT evaluation\n") and "TABLES plots at ''" in page
    assert "```bash\nicpt eval --preset default\n```" in page and "the run took 1.5 minutes" in page


def test_write_docs_copies_the_plots_beside_the_page(stubbed, tmp_path):
    results = run_results()
    report.write_results(results, [], tmp_path / "run")
    page = report.write_docs(results, tmp_path / "run", tmp_path / "docs" / "results.md")
    assert page == tmp_path / "docs" / "results.md"
    assert sorted(p.name for p in (tmp_path / "docs" / "results_plots").iterdir()) == [
        "accuracy_vs_prompt_tokens.png", "accuracy_vs_references.png"]
    text = page.read_text()
    assert text.startswith("# ICPT results\n") and "TABLES plots at 'results_plots/'" in text


def test_the_page_opens_with_what_the_claims_say(stubbed, tmp_path):
    claims = [{"claim": "A", "verdict": "supported", "evidence": "a"},
              {"claim": "B", "verdict": "cannot decide", "evidence": "b"},
              {"claim": "C", "verdict": "supported", "evidence": "c"}]
    ceiling = {"recognition": {"measurable": True}, "caption": {"measurable": False}}
    report.write_results(run_results(claims=claims, ceiling=ceiling), [], tmp_path)
    page = (tmp_path / "results.md").read_text()
    assert "Of the method's 3 claims, on the embedded backbone and its generated world: 2 supported, 0 refuted, " \
           "1 cannot be decided." in page
    assert "*A*: **supported** (a)." in page and "*B*: **cannot decide** (b)." in page
    assert "chance + 0.05): caption. Only recognition can say anything" in page
    report.write_results(run_results(), [], tmp_path / "no_claims")
    assert "What these numbers say" not in (tmp_path / "no_claims" / "results.md").read_text()
