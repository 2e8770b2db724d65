"""The benchmark loaders: Yo'LLaVA on its real question files, MyVLM and MC-LLaVA on fixtures in their layouts."""

import json
import os
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from icpt.benchmarks import YOLLAVA_FILES, load_mc_llava, load_myvlm, load_yollava
from icpt.episodes import EPISODE_FEATURES
from icpt.metrics import load_metric


BENCHMARK_FORMATS = Path(__file__).resolve().parents[2] / "shared" / "benchmark-formats"
YOLLAVA_KIT = BENCHMARK_FORMATS / "yollava"
MC_LLAVA_KIT = BENCHMARK_FORMATS / "mc-llava"


def stored(episodes, column):
    """A column as stored in Arrow: images stay {"path", "bytes"} records, nothing is decoded."""
    return episodes.with_format("arrow")[column].to_pylist()


def image_paths(episodes):
    """The stored (path, bytes) of each query image, None for text-only episodes."""
    return [(cell["path"], cell["bytes"]) if cell else None for cell in stored(episodes, "image")]


def by_task(episodes, task):
    """The episodes of one task."""
    return episodes.filter(lambda name: name == task, input_columns="task")


def lay_images(root: Path, relative_paths, colour=(200, 30, 30)) -> None:
    """A tiny stand-in PNG at each path (hard links to one file: the loaders only need the paths)."""
    root.mkdir(parents=True, exist_ok=True)
    original = root / ".stand-in.png"
    if not original.exists():
        Image.new("RGB", (4, 4), colour).save(original)
    for relative in relative_paths:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        os.link(original, path)


def write_json(path: Path, content) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=1))


# ----------------------------------------------------------------------------------- Yo'LLaVA, real files

needs_yollava_kit = pytest.mark.skipif(
    not YOLLAVA_KIT.is_dir(),
    reason=f"the Yo'LLaVA annotation kit is not at {YOLLAVA_KIT} (it is never copied into the repository)",
)
REAL_FILES = {task: str(YOLLAVA_KIT / name) for task, name in YOLLAVA_FILES.items()}


@pytest.fixture(scope="module")
def yollava_root(tmp_path_factory):
    if not YOLLAVA_KIT.is_dir():
        pytest.skip(f"the Yo'LLaVA annotation kit is not at {YOLLAVA_KIT}")
    root = tmp_path_factory.mktemp("yollava")
    lay_images(root, (YOLLAVA_KIT / "image-files.txt").read_text().split())
    return root


@pytest.fixture(scope="module")
def yollava(yollava_root):
    return load_yollava(yollava_root, split_files=REAL_FILES)


@pytest.fixture(scope="module")
def real_files():
    return {task: json.loads(Path(path).read_text()) for task, path in REAL_FILES.items()}


@needs_yollava_kit
def test_yollava_schema_and_task_counts(yollava, real_files):
    assert yollava.features == EPISODE_FEATURES
    counts = Counter(yollava["task"])
    assert counts["vqa"] == sum(len(questions) for questions in real_files["vqa"].values())
    assert counts["text_qa"] == sum(len(questions) for questions in real_files["text_qa"].values())
    assert set(counts) == {"recognition", "vqa", "text_qa"}


@needs_yollava_kit
def test_yollava_recognition_drops_the_negative_typed_true_duplicates(yollava, real_files):
    rows = real_files["recognition"]
    positives = [row for row in rows if row["type"] == "positive"]
    quirk = [row for row in rows if row["type"] == "negative" and row["correct_answer"]]
    negatives = [row for row in rows if row["type"] == "negative" and not row["correct_answer"]]
    # the quirk as the kit's README describes it: 333 negative-typed rows labelled true, each a positive's repeat
    assert len(positives) == len(quirk) == 333
    assert {(row["image"], row["concept"]) for row in quirk} == {(row["image"], row["concept"]) for row in positives}

    recognition = by_task(yollava, "recognition")
    answers = Counter(recognition["answer"])
    assert answers == {"Yes": len(positives), "No": len(negatives)}
    assert answers == {"Yes": 333, "No": 12987}  # the Yo'LLaVA protocol: 333 photos x 39 other concepts
    pairs = list(zip((path for path, _ in image_paths(recognition)), recognition["target"]))
    assert len(pairs) == len(set(pairs))


@needs_yollava_kit
def test_yollava_recognition_episodes(yollava, yollava_root):
    recognition = by_task(yollava, "recognition")
    row = recognition[0]
    assert row["question"] == f"Can you see {row['target']} in this photo? Answer with a single word or phrase."
    assert [concept["name"] for concept in row["concepts"]] == [row["target"]]
    # the answer agrees with the folder the photo sits in, which `present` names
    for path, target, answer, present in zip(
        (path for path, _ in image_paths(recognition)),
        recognition["target"],
        recognition["answer"],
        recognition["present"],
    ):
        assert present == [f"<{Path(path).parent.name}>"]
        assert answer == ("Yes" if present == [target] else "No")


@needs_yollava_kit
def test_yollava_questions_name_the_concept_not_sks(yollava, real_files):
    for task in ("vqa", "text_qa"):
        episodes = by_task(yollava, task)
        assert not any("sks" in question for question in episodes["question"])
        assert all(target in question for target, question in zip(episodes["target"], episodes["question"]))
    first_concept, first_questions = next(iter(real_files["vqa"].items()))
    first_key, first_entry = next(iter(first_questions.items()))
    vqa = by_task(yollava, "vqa")
    assert vqa[0]["question"] == first_entry["question"].replace("<sks>", f"<{first_concept}>")
    assert vqa[0]["options"] == [first_entry["options"]["A"], first_entry["options"]["B"]]
    assert vqa[0]["answer"] == first_entry["options"][first_entry["correct_answer"]]
    assert image_paths(vqa)[0][0].endswith(first_key.removeprefix("./"))


@needs_yollava_kit
def test_yollava_text_qa_has_no_image_and_reads_the_option_key(yollava, real_files):
    text_qa = by_task(yollava, "text_qa")
    assert all(cell is None for cell in image_paths(text_qa))
    entry = real_files["text_qa"]["bo"]["1"]
    row = next(
        row
        for row in text_qa
        if row["target"] == "<bo>" and row["question"] == entry["question"].replace("sks", "<bo>")
    )
    assert row["options"] == [entry["option"]["A"], entry["option"]["B"]]
    assert row["answer"] == entry["option"][entry["correct_answer"]]


@needs_yollava_kit
def test_yollava_references_are_the_training_photos_by_path(yollava, yollava_root):
    listed = (YOLLAVA_KIT / "image-files.txt").read_text().split()
    row = stored(yollava, "concepts")[0][0]
    concept = row["name"].strip("<>")
    expected = sorted(
        (path for path in listed if path.startswith(f"yollava-data/train/{concept}/")),
        key=lambda path: int(Path(path).stem),
    )
    assert [reference["path"] for reference in row["references"]] == [str(yollava_root / path) for path in expected]
    # referenced, not loaded: no bytes stored anywhere
    assert all(reference["bytes"] is None for reference in row["references"])
    assert all(cell is None or cell[1] is None for cell in image_paths(yollava))


@needs_yollava_kit
def test_yollava_episodes_score_perfectly_when_answered_with_their_answers(yollava):
    # every reference of the real files is among its options (even tokyo-keyboard's "No"/"No")
    for task in ("vqa", "text_qa"):
        episodes = by_task(yollava, task)
        results = load_metric("option_match", keep_in_memory=True).compute(
            predictions=episodes["answer"], references=episodes["answer"], options=episodes["options"]
        )
        assert results["accuracy"] == 1.0
    recognition = by_task(yollava, "recognition")
    results = load_metric("recognition", keep_in_memory=True).compute(
        predictions=recognition["answer"], references=[answer == "Yes" for answer in recognition["answer"]]
    )
    assert (results["weighted_accuracy"], results["num_positives"]) == (1.0, 333)


@needs_yollava_kit
def test_yollava_num_references_and_task_subset(yollava_root):
    episodes = load_yollava(yollava_root, split_files={"vqa": REAL_FILES["vqa"]}, num_references=2)
    assert set(episodes["task"]) == {"vqa"}
    references = [concepts[0]["references"] for concepts in stored(episodes, "concepts")]
    assert all(len(paths) == 2 for paths in references)
    assert all(
        Path(paths[0]["path"]).name == "0.png" and Path(paths[1]["path"]).name == "1.png" for paths in references
    )


@needs_yollava_kit
def test_yollava_missing_files_are_named(yollava_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="recognition_test.json"):
        load_yollava(yollava_root, split_files={"recognition": "recognition_test.json"})
    with pytest.raises(FileNotFoundError, match="yollava-data"):
        load_yollava(tmp_path, split_files=REAL_FILES)
    with pytest.raises(ValueError, match="Unknown Yo'LLaVA task"):
        load_yollava(yollava_root, split_files={"captions": REAL_FILES["vqa"]})
    # a concept without its training folder, then questions about photos that are not there
    listed = (YOLLAVA_KIT / "image-files.txt").read_text().split()
    partial = tmp_path / "partial"
    lay_images(partial, ["yollava-data/test/bo/0.png"])
    with pytest.raises(FileNotFoundError, match="training photos of Yo'LLaVA concept"):
        load_yollava(partial, split_files={"vqa": REAL_FILES["vqa"]})
    lay_images(partial, [path for path in listed if path.startswith("yollava-data/train/")])
    asked = {
        key.removeprefix("./")
        for questions in json.loads(Path(REAL_FILES["vqa"]).read_text()).values()
        for key in questions
    }
    missing = len(asked - {"yollava-data/test/bo/0.png"})
    with pytest.raises(
        FileNotFoundError, match=f"{missing} Yo'LLaVA query photos named in the question files are missing"
    ):
        load_yollava(partial, split_files={"vqa": REAL_FILES["vqa"]})


def test_yollava_conflicting_duplicates_are_an_error(tmp_path):
    lay_images(tmp_path, ["yollava-data/train/bo/0.png", "yollava-data/test/bo/0.png"])
    row = {"image": "yollava-data/test/bo/0.png", "question": "", "concept": "bo", "type": "positive"}
    write_json(tmp_path / "recognition_test.json", [{**row, "correct_answer": True}, {**row, "correct_answer": False}])
    with pytest.raises(ValueError, match="different answers"):
        load_yollava(tmp_path, split_files={"recognition": "recognition_test.json"})


# --------------------------------------------------------------------------------------- MyVLM, fixture


@pytest.fixture
def myvlm_root(tmp_path):
    """Three MyVLM concepts with six photos each and a captions.json that names the concept."""
    root = tmp_path / "myvlm"
    for concept in ("dino", "mug", "Alex"):
        lay_images(root, [f"{concept}/{index}.jpg" for index in range(6)])
        write_json(
            root / concept / "captions.json",
            {
                f"{index}.jpg": [f"{concept.title()} on a table, photo {index}.", "Another caption."]
                for index in range(6)
            },
        )
    return root


def test_myvlm_caption_and_recognition_episodes(myvlm_root):
    episodes = load_myvlm(myvlm_root, num_references=4)
    assert episodes.features == EPISODE_FEATURES
    captions = by_task(episodes, "caption")
    recognition = by_task(episodes, "recognition")
    assert captions.num_rows == 3 * 2  # 6 photos - 4 references per concept
    assert recognition.num_rows == 6 * 3  # each query photo asked about each concept
    assert Counter(recognition["answer"]) == {"Yes": 6, "No": 12}
    row = captions[0]
    assert row["question"] == f"Please caption this image of {row['target']}."
    assert row["answer"].startswith(f"{row['target']} on a table")
    assert row["present"] == [row["target"]]


def test_myvlm_references_and_queries_are_disjoint_and_seeded(myvlm_root):
    def split(seed):
        episodes = load_myvlm(myvlm_root, num_references=4, seed=seed)
        captions = by_task(episodes, "caption")
        references = {
            concepts[0]["name"]: [image["path"] for image in concepts[0]["references"]]
            for concepts in stored(captions, "concepts")
        }
        queries = [path for path, _ in image_paths(captions)]
        return references, queries

    references, queries = split(0)
    assert all(len(paths) == 4 for paths in references.values())
    assert not set(queries) & {path for paths in references.values() for path in paths}
    assert split(0) == (references, queries)
    assert split(1) != (references, queries)


def test_myvlm_errors(myvlm_root, tmp_path):
    with pytest.raises(ValueError, match="none is left to query"):
        load_myvlm(myvlm_root, num_references=6)
    (myvlm_root / "mug" / "captions.json").rename(myvlm_root / "mug" / "captions_augmented.json")
    assert load_myvlm(myvlm_root).num_rows == 24  # read from captions_augmented.json instead
    (myvlm_root / "mug" / "captions_augmented.json").unlink()
    with pytest.raises(FileNotFoundError, match="captions of MyVLM concept 'mug'"):
        load_myvlm(myvlm_root)
    with pytest.raises(FileNotFoundError, match="one folder per concept"):
        load_myvlm(tmp_path / "myvlm" / "dino")


# ------------------------------------------------------------------------------------ MC-LLaVA, fixture


def choice(question, options, answer):
    return {"Human": question + "".join(f"\n{letter}. {text}" for letter, text in zip("ABC", options)), "AI": answer}


@pytest.fixture
def mc_llava_root(tmp_path):
    """Two scenarios in MC-LLaVA's layout: Anya_Loid (two characters) and A_L_Y (three)."""
    root = tmp_path / "mc-llava"
    write_json(root / "scenarios.json", ["Anya_Loid", "A_L_Y"])
    scenarios = {"two_concept": ("Anya_Loid", ["Anya", "Loid"]), "three_concept": ("A_L_Y", ["A", "L", "Y"])}
    for group, (scenario, characters) in scenarios.items():
        for character in characters:
            train = f"{group}/concept/train/{character}"
            lay_images(
                root,
                [f"{train}/{name}" for name in ("0.png", "0_mask.png", "1.png", "1_mask.png", "2.png", "2_mask.png")],
            )
            lay_images(root, [f"{group}/concept/test/{character}/{index}.png" for index in range(2)])
        lay_images(root, [f"{group}/multi/{scenario}/{name}" for name in ("0.png", "0_som.png", "1.png")])
    # who is in the scenario photos (keys written with the authors' absolute paths)
    multi = root / "two_concept" / "multi" / "Anya_Loid"
    authors = "/workspace/data/MulBench/two_concept/multi/Anya_Loid"
    write_json(
        multi / "position.json",
        {f"{authors}/0.png": {"Anya": [10, 20], "Loid": [40, 20]}, f"{authors}/1.png": {"Anya": None, "Loid": [5, 5]}},
    )
    write_json(
        root / "three_concept" / "multi" / "A_L_Y" / "position.json",
        {"0.png": {"A": [1, 1], "L": [2, 2], "Y": [3, 3]}, "1.png": {"A": [1, 1]}},
    )
    # Anya's question files and the scenario's
    anya = root / "two_concept" / "concept" / "test" / "Anya"
    write_json(
        anya / "choice.json",
        {f"{anya}/0.png": choice("What is <Anya> holding?", ["A peanut", "A book", "A cup"], "A")},
    )
    write_json(
        anya / "vqa.json", {"1.png": {"Human": "What is <Anya> wearing?", "AI": "<Anya> wears a school uniform."}}
    )
    write_json(anya / "qa.json", [{"question": "What does <Anya> love?\nA) Peanuts\nB) Carrots", "answer": "A"}])
    loid = root / "two_concept" / "concept" / "test" / "Loid"
    question = "What is <Loid>'s job?\nA: Spy\nB: Baker\nAnswer with the option's letter."
    write_json(
        loid / "qa.json", [{"question": question, "answer": "Spy"}, {"question": question, "answer": "B) Baker"}]
    )
    write_json(
        multi / "choice.json",
        {
            f"{authors}/0.png": [
                choice("Who stands left?", ["<Anya>", "<Loid>"], "A"),
                choice("Are <Anya> and <Loid> together?", ["Yes", "No"], "(A)"),
            ]
        },
    )
    write_json(
        multi / "qa.json",
        [{"question": "How are <Anya> and <Loid> related?\n(A) Family\n(B) Strangers", "answer": "A"}],
    )
    return root


def test_mc_llava_counts_and_schema(mc_llava_root):
    episodes = load_mc_llava(mc_llava_root)
    assert episodes.features == EPISODE_FEATURES
    # photos: Anya_Loid 2 x 2 own + 2 scenario = 6; A_L_Y 3 x 2 own + 2 scenario = 8 (the _som rendering is no photo)
    counts = Counter(episodes["task"])
    assert counts["recognition"] == 6 * 2 + 8 * 3
    assert counts["presence"] == counts["caption"] == 6 + 8
    assert counts["vqa"] == 1 + 2 and counts["attribute"] == 1 and counts["text_qa"] == 1 + 2 + 1


def test_mc_llava_recognition_follows_positions_and_tags_multi_concept(mc_llava_root):
    episodes = by_task(load_mc_llava(mc_llava_root), "recognition")
    rows = [
        (Path(path).relative_to(mc_llava_root).as_posix(), target, answer, tags)
        for (path, _), target, answer, tags in zip(
            image_paths(episodes), episodes["target"], episodes["answer"], episodes["tags"]
        )
    ]
    assert ("two_concept/concept/test/Anya/0.png", "<Anya>", "Yes", []) in rows
    assert ("two_concept/concept/test/Anya/0.png", "<Loid>", "No", []) in rows
    assert ("two_concept/multi/Anya_Loid/0.png", "<Anya>", "Yes", ["multi_concept"]) in rows
    assert ("two_concept/multi/Anya_Loid/0.png", "<Loid>", "Yes", ["multi_concept"]) in rows
    assert ("two_concept/multi/Anya_Loid/1.png", "<Anya>", "No", []) in rows  # only Loid there: not multi
    assert ("three_concept/multi/A_L_Y/1.png", "<Y>", "No", []) in rows
    assert (
        episodes[0]["question"]
        == "Can you see <Anya> in this photo? Answer the question using a single word Yes or No."
    )


def test_mc_llava_concepts_hold_every_character_with_masks(mc_llava_root):
    episodes = load_mc_llava(mc_llava_root, num_references=2)
    concepts = {tuple(concept["name"] for concept in row) for row in stored(episodes, "concepts")}
    assert concepts == {("<Anya>", "<Loid>"), ("<A>", "<L>", "<Y>")}
    anya = stored(episodes, "concepts")[0][0]
    assert [Path(image["path"]).name for image in anya["references"]] == ["0.png", "1.png"]
    assert [Path(image["path"]).name for image in anya["masks"]] == ["0_mask.png", "1_mask.png"]


def test_mc_llava_presence_and_caption(mc_llava_root):
    episodes = load_mc_llava(mc_llava_root)
    presence = by_task(episodes, "presence")
    answers = {
        Path(path).relative_to(mc_llava_root).as_posix(): answer
        for (path, _), answer in zip(image_paths(presence), presence["answer"])
    }
    assert answers["two_concept/multi/Anya_Loid/0.png"] == "<Anya>, <Loid>"
    assert answers["two_concept/multi/Anya_Loid/1.png"] == "<Loid>"
    assert answers["three_concept/concept/test/Y/1.png"] == "<Y>"
    assert presence[0]["question"].startswith("Which of <Anya>, <Loid> are in this photo?")
    caption = by_task(episodes, "caption")
    assert caption[0]["question"].startswith("Can you see <Anya>, <Loid> in the image?")
    assert caption[0]["answer"] == "" and caption[0]["present"] == ["<Anya>"]


def test_mc_llava_choice_questions_are_split_into_stem_and_options(mc_llava_root):
    episodes = load_mc_llava(mc_llava_root)
    vqa = by_task(episodes, "vqa")
    single = vqa[0]
    assert (single["question"], single["options"], single["answer"]) == (
        "What is <Anya> holding?",
        ["A peanut", "A book", "A cup"],
        "A peanut",
    )
    assert single["target"] == "<Anya>" and single["tags"] == []
    scenario = vqa[2]
    assert scenario["answer"] == "Yes" and scenario["target"] == "" and scenario["tags"] == ["multi_concept"]
    text_qa = by_task(episodes, "text_qa")
    assert text_qa["options"] == [["Peanuts", "Carrots"], ["Spy", "Baker"], ["Spy", "Baker"], ["Family", "Strangers"]]
    # the answer as a letter, as the option's text, or as both; the instruction after the options is left out
    assert text_qa["answer"] == ["Peanuts", "Spy", "Baker", "Family"]
    assert text_qa["question"][1] == "What is <Loid>'s job?"
    assert text_qa["target"] == ["<Anya>", "<Loid>", "<Loid>", ""]
    assert all(cell is None for cell in image_paths(text_qa))
    attribute = by_task(episodes, "attribute")[0]
    assert attribute["answer"] == "<Anya> wears a school uniform." and attribute["options"] == []


@pytest.mark.skipif(not MC_LLAVA_KIT.is_dir(), reason=f"MC-LLaVA's templates are not at {MC_LLAVA_KIT}")
def test_mc_llava_recognition_worded_by_the_real_templates(mc_llava_root):
    template_file = MC_LLAVA_KIT / "recognize_positive_template.json"
    questions = [entry["Question"] for entry in json.loads(template_file.read_text())]
    episodes = by_task(load_mc_llava(mc_llava_root, recognition_templates=template_file), "recognition")
    expected = [
        questions[index % len(questions)].replace("<sks>", target)
        + " Answer the question using a single word Yes or No."
        for index, target in enumerate(episodes["target"])
    ]
    assert episodes["question"] == expected
    assert len(set(episodes["question"])) > 10


def test_mc_llava_errors(mc_llava_root):
    anya = mc_llava_root / "two_concept" / "concept" / "test" / "Anya"
    write_json(anya / "vqa.json", {"7.png": {"Human": "What is <Anya> doing?", "AI": "Reading."}})
    with pytest.raises(FileNotFoundError, match="asks about 7.png"):
        load_mc_llava(mc_llava_root)
    (anya / "vqa.json").unlink()
    multi = mc_llava_root / "two_concept" / "multi" / "Anya_Loid"
    positions = json.loads((multi / "position.json").read_text())
    write_json(multi / "position.json", {"0.png": {"Anya": [1, 1], "Bond": [2, 2]}})
    with pytest.raises(ValueError, match=r"places \['Bond'\] in 0.png"):
        load_mc_llava(mc_llava_root)
    write_json(multi / "position.json", positions)
    write_json(multi / "qa.json", [{"question": "How are they related? A) Family B) Strangers", "answer": "A"}])
    with pytest.raises(ValueError, match="one option per line"):
        load_mc_llava(mc_llava_root)
    (multi / "qa.json").unlink()
    (multi / "position.json").unlink()
    with pytest.raises(FileNotFoundError, match="position.json"):
        load_mc_llava(mc_llava_root)
    write_json(mc_llava_root / "scenarios.json", ["Bond_Yor"])
    with pytest.raises(FileNotFoundError, match="multi/Bond_Yor"):
        load_mc_llava(mc_llava_root)
    (mc_llava_root / "scenarios.json").unlink()
    with pytest.raises(FileNotFoundError, match="scenarios.json"):
        load_mc_llava(mc_llava_root)
