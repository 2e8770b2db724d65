"""A few small episodes of every shape the collator meets (one or two concepts, with or without a query photo or
masks), in the schema of `icpt.episodes`."""

from datasets import Dataset

from icpt.episodes import EPISODE_FEATURES

from .images import random_image


def make_episodes(count=8, masks=False):
    rows = []
    for i in range(count):
        refs_a = [random_image(100 + 7 * i + j) for j in range(1 + i % 3)]
        refs_b = [random_image(200 + 5 * i + j) for j in range(1 + (i + 1) % 2)]
        concepts = [{"name": "<bo>", "references": refs_a, "masks": [random_image(300 + j, mode="L") for j in range(len(refs_a))] if masks else []},
                    {"name": f"<c{i % 4}>", "references": refs_b, "masks": []}]
        rows.append({
            "concepts": concepts[: 1 + i % 2], "image": random_image(400 + i) if i % 4 else None,
            "question": "Can you see <bo> in this photo?" if i % 4 else "Is <bo> a dog?", "answer": "Yes" if i % 3 else "No",
            "task": "recognition" if i % 4 else "text_qa", "target": "<bo>", "options": [], "present": [], "tags": [],
        })
    return Dataset.from_list(rows, features=EPISODE_FEATURES)
