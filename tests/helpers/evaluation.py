"""Small evaluation inputs: tiny ICPT settings, and episode datasets of hand-made concepts or of the generated world."""

from datasets import Dataset

from helpers.images import random_image
from icpt.episodes import EPISODE_FEATURES, TASKS
from icpt.world.tasks import build_episodes
from icpt.world.world import World

TINY = {"max_prompt_length": 4, "min_prompt_length": 1, "projector_hidden_size": 32, "projector_heads": 2,
        "projector_layers": 1}


def concept_dataset(descriptions=True):
    rows = []
    for i in range(3):
        refs = [random_image(10 * i + j) for j in range(4)]
        rows.append({
            "concepts": [{"name": "<bo>", "references": [random_image(j) for j in range(4)], "masks": [],
                          "description": "a red dog" if descriptions else None},
                         {"name": f"<c{i}>", "references": refs, "masks": [], "description": "a mug" if descriptions else None}],
            "image": random_image(100 + i), "question": "Can you see <bo> in this photo?", "answer": "Yes",
            "task": "recognition", "target": "<bo>", "options": [], "present": ["<bo>"], "tags": [],
        })
    return Dataset.from_list(rows, features=EPISODE_FEATURES)


def world_dataset(path, descriptions=True):
    # every task once, plus two more recognition questions so that both answers occur (Yes, Yes, No)
    episodes = build_episodes(World(seed=0, num_identities=60), "held_out", num_episodes=8, seed=0,
                              tasks=TASKS + ("recognition", "recognition"))
    assert {a for t, a in zip(episodes["task"], episodes["answer"]) if t == "recognition"} == {"Yes", "No"}
    assert all(c["description"] for row in episodes["concepts"] for c in row)  # the world describes its identities
    if not descriptions:
        episodes = episodes.map(lambda row: {"concepts": [{**c, "description": None} for c in row["concepts"]]})
    episodes.save_to_disk(path)
    return path
