"""Training episodes from a user's own photos (`icpt episodes`): folders per concept and `datasets` datasets."""

import pytest
from datasets import ClassLabel, Dataset, Features, load_from_disk
from datasets import Image as ImageFeature

from helpers.images import random_image
from icpt.commands.cli import main as cli_main
from icpt.data.user_episodes import concepts_from_dataset, concepts_from_folder, episodes_from_concepts
from icpt.episodes import EPISODE_FEATURES
from modeling_icpt.input_checks import ICPTInputError


@pytest.fixture
def photos(tmp_path):
    """my_photos/<name>/<i>.png for five concepts, masks for <bo>, a caption for one photo of <bo>."""
    root = tmp_path / "my_photos"
    for c, name in enumerate(["bo", "kiki", "mia", "zed", "lu"]):
        (root / name).mkdir(parents=True)
        for i in range(4):
            random_image(10 * c + i).save(root / name / f"{i}.png")
    (root / "bo" / "masks").mkdir()
    for i in range(4):
        random_image(100 + i, mode="L").save(root / "bo" / "masks" / f"{i}.png")
    (root / "bo" / "captions").mkdir()
    (root / "bo" / "captions" / "2.txt").write_text("<bo> naps on a red sofa.")
    return root


def test_a_folder_per_concept_gives_episodes_split_by_identity(photos, tmp_path):
    concepts = concepts_from_folder(photos)
    assert sorted(concepts) == ["<bo>", "<kiki>", "<lu>", "<mia>", "<zed>"]
    assert len(concepts["<bo>"].masks) == 4 and concepts["<bo>"].captions[2] == "<bo> naps on a red sofa."
    assert concepts["<kiki>"].masks == [] and concepts["<kiki>"].captions == []

    assert cli_main(["episodes", "--photos", str(photos), "--output", str(tmp_path / "episodes"), "--num_episodes", "40",
                     "--eval_episodes", "10", "--eval_fraction", "0.4", "--num_references", "2"]) == 0
    train, held_out = load_from_disk(tmp_path / "episodes" / "train"), load_from_disk(tmp_path / "episodes" / "eval")
    assert train.features == EPISODE_FEATURES and (len(train), len(held_out)) == (40, 10)
    train_names = {c["name"] for row in train["concepts"] for c in row}
    held_out_names = {c["name"] for row in held_out["concepts"] for c in row}
    assert len(held_out_names) == 2 and not train_names & held_out_names  # held out by identity
    for split in (train, held_out):
        for row in split:
            (concept,) = row["concepts"]
            assert 1 <= len(concept["references"]) <= 2 and concept["name"] in row["question"]
            assert len(concept["masks"]) in (0, len(concept["references"]))
            if row["task"] == "recognition":
                assert row["answer"] in ("Yes", "No")
                assert (row["answer"] == "Yes") == (row["present"] == [concept["name"]])
            else:
                assert row["task"] == "caption" and row["answer"] == "<bo> naps on a red sofa."
    recognition = [a for t, a in zip(train["task"], train["answer"]) if t == "recognition"]
    assert 0.3 <= recognition.count("Yes") / len(recognition) <= 0.7


def test_a_datasets_dataset_with_image_and_identity_columns(tmp_path):
    features = Features({"picture": ImageFeature(), "who": ClassLabel(names=["golden retriever", "kiki", "mia"])})
    dataset = Dataset.from_dict({"picture": [random_image(i) for i in range(9)], "who": [i % 3 for i in range(9)]},
                                features=features)
    dataset.save_to_disk(tmp_path / "pets")
    concepts = concepts_from_dataset(dataset, "picture", "who")
    assert {label: len(c.photos) for label, c in concepts.items()} == {"<golden_retriever>": 3, "<kiki>": 3, "<mia>": 3}
    assert cli_main(["episodes", "--dataset", str(tmp_path / "pets"), "--image_column", "picture", "--label_column",
                     "who", "--output", str(tmp_path / "episodes"), "--num_episodes", "6", "--eval_fraction", "0"]) == 0
    assert len(load_from_disk(tmp_path / "episodes" / "train")) == 6
    assert not (tmp_path / "episodes" / "eval").exists()
    with pytest.raises(ICPTInputError, match="no column 'image'"):
        concepts_from_dataset(dataset)


def test_bad_user_data_gets_clear_errors(photos, tmp_path, capsys):
    with pytest.raises(ICPTInputError, match="fewer than 2 photos"):
        episodes_from_concepts({"<bo>": [random_image(0)], "<kiki>": [random_image(1), random_image(2)]})
    with pytest.raises(ICPTInputError, match="too few to hold out"):
        episodes_from_concepts({"<bo>": [random_image(0)] * 2, "<kiki>": [random_image(1)] * 2}, eval_fraction=0.5)
    (photos / "kiki" / "captions").mkdir()
    (photos / "kiki" / "captions" / "0.txt").write_text("A mug on a table.")
    with pytest.raises(ICPTInputError, match="does not name <kiki>"):
        concepts_from_folder(photos)
    (photos / "kiki" / "captions" / "0.txt").unlink()
    (photos / "bo" / "masks" / "3.png").unlink()
    with pytest.raises(ICPTInputError, match="masks for some photos"):
        concepts_from_folder(photos)
    (tmp_path / "out").mkdir()
    assert cli_main(["episodes", "--photos", str(photos), "--output", str(tmp_path / "out")]) == 2
    assert "exists: pass --overwrite" in capsys.readouterr().err
