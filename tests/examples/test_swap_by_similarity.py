"""examples/swap_by_similarity.py: the swap test's answers grouped by the attributes the two identities share."""

import json

from helpers.examples import run_example
from icpt.world.world import ATTRIBUTES, World


def write_run(folder, answers, backbone):
    """results.json of a run whose icpt swap test gave `answers` (asked, shown, before, after)."""
    folder.mkdir()
    rows = [{"question_id": f"q{i}", "before": before, "after": after, "asks_about": [asked.description],
             "photos_of": [shown.description]} for i, (asked, shown, before, after) in enumerate(answers)]
    results = {"backbone": str(backbone), "swap_test": {"methods": {"icpt": {"answers": rows}}}}
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def shared(first, second):
    return sum(getattr(first, a) == getattr(second, a) for a in ATTRIBUTES)


def test_groups_by_shared_attributes(tmp_path):
    backbone = tmp_path / "backbone"
    backbone.mkdir()
    (backbone / "world.json").write_text(json.dumps({"seed": 0, "num_identities": 60}))
    identities = World(seed=0, num_identities=60).identities
    asked = identities[0]
    # two partners that share different numbers of attributes with the identity asked about
    by_count = {}
    for other in identities[1:]:
        by_count.setdefault(shared(asked, other), other)
    low, high = sorted(by_count)[0], sorted(by_count)[-1]
    assert low < high
    answers = [(asked, by_count[low], "Yes", "No"), (asked, by_count[low], "Yes", "No"),
               (asked, by_count[high], "Yes", "yes."), (asked, by_count[high], "No", "Yes")]
    run = write_run(tmp_path / "run", answers, backbone)
    result = run_example("swap_by_similarity.py", run, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "4 swapped questions of icpt" in result.stdout
    rows = {line.split(" | ")[0].strip("| "): line.strip("| ").split(" | ")[1:]
            for line in result.stdout.splitlines() if line.startswith("| ") and line[2].isdigit()}
    # low: both answers went from yes to no; high: one stayed yes, one went from no to yes
    assert rows[str(low)] == ["2", "0.000", "1.000"]
    assert rows[str(high)] == ["2", "1.000", "0.500"]


def test_clear_errors(tmp_path):
    result = run_example("swap_by_similarity.py", tmp_path / "nowhere", cwd=tmp_path)
    assert result.returncode != 0 and "pass the output folder of an `icpt eval` run" in result.stderr
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "results.json").write_text(json.dumps({"backbone": "b", "swap_test": {"methods": {}}}))
    result = run_example("swap_by_similarity.py", tmp_path / "old", cwd=tmp_path)
    assert result.returncode != 0 and "--swap-methods icpt" in result.stderr
