"""The episode schema (icpt/episodes.py): the one data contract of training, evaluation and the loaders."""

from datasets import Dataset

from helpers.images import random_image
from icpt.episodes import EPISODE_FEATURES, TAGS, TASKS


def test_the_question_types_and_tags():
    assert TASKS == ("recognition", "presence", "vqa", "text_qa", "attribute", "caption")
    assert TAGS == ("environment_shift", "look_alike", "multi_concept")
    assert list(EPISODE_FEATURES) == ["concepts", "image", "question", "answer", "task", "target", "options",
                                      "present", "tags"]


def test_an_episode_round_trips_with_photos_and_without_a_query_image(tmp_path):
    for i in range(3):
        random_image(i, size=(16, 12)).save(tmp_path / f"{i}.png")
    concept = {"name": "<bo>", "references": [str(tmp_path / "0.png"), str(tmp_path / "1.png")], "masks": [],
               "description": None}
    rows = [
        {"concepts": [concept], "image": str(tmp_path / "2.png"), "answer": "Yes", "task": "recognition",
         "question": "Can you see <bo> in this photo? Answer with a single word or phrase.", "target": "<bo>",
         "options": [], "present": ["<bo>"], "tags": ["environment_shift"]},
        {"concepts": [{**concept, "description": "a small red robot"}], "image": None, "task": "text_qa",
         "question": "Is <bo> made of metal or wool?", "answer": "metal", "target": "<bo>",
         "options": ["metal", "wool"], "present": [], "tags": []},
    ]
    episodes = Dataset.from_list(rows, features=EPISODE_FEATURES)
    assert episodes.features == EPISODE_FEATURES and len(episodes) == 2
    first, second = episodes[0], episodes[1]
    assert first["image"].size == (16, 12) and [r.size for r in first["concepts"][0]["references"]] == [(16, 12)] * 2
    assert first["concepts"][0]["description"] is None and first["tags"] == ["environment_shift"]
    assert second["image"] is None and second["options"] == ["metal", "wool"]
    assert second["concepts"][0]["description"] == "a small red robot"
    assert {row["task"] for row in rows} <= set(TASKS)
