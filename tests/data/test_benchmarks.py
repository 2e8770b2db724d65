"""The benchmark loaders on fixtures in each benchmark's published layout, and on the real annotation files.

The real files (`../shared/benchmark-formats`, never copied into the repository) are read where present:
stand-in images are laid at the paths they name and the files are linked into a temporary copy of the
published layout. Tests that need them skip with the reason when the folder is absent.
"""

import json
import os
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from icpt.data.benchmarks import MC_LLAVA_TASKS, RAP_FILES, load_mc_llava, load_myvlm, load_rap, load_yollava
from icpt.episodes import EPISODE_FEATURES
from icpt.evaluation.methods import eval_episodes
from icpt.evaluation.scoring import question_score
from icpt.metrics import load_metric

BENCHMARK_FORMATS = Path(__file__).resolve().parents[3] / "shared" / "benchmark-formats"
YOLLAVA_KIT = BENCHMARK_FORMATS / "yollava"
MC_LLAVA_KIT = BENCHMARK_FORMATS / "mc-llava"
RAP_KIT = BENCHMARK_FORMATS / "rap"
REAL_FILES = {
    "recognition": YOLLAVA_KIT / "recognition_test.json",
    "vqa": YOLLAVA_KIT / "yollava-visual-qa.json",
    "text_qa": YOLLAVA_KIT / "yollava-text-only-qa.json",
}

needs_yollava_kit = pytest.mark.skipif(
    not YOLLAVA_KIT.is_dir(),
    reason=f"the Yo'LLaVA annotation kit is not at {YOLLAVA_KIT} (it is never copied into the repository)",
)
needs_rap_kit = pytest.mark.skipif(
    not (YOLLAVA_KIT.is_dir() and RAP_KIT.is_dir()),
    reason=f"RAP's database and the recognition file are not at {RAP_KIT} and {YOLLAVA_KIT}",
)


def stored(episodes, column):
    """A column as stored in Arrow: images stay {"path", "bytes"} records, nothing is decoded."""
    return episodes.with_format("arrow")[column].to_pylist()


def image_paths(episodes):
    """The stored path of each query image, None for text-only episodes."""
    return [cell["path"] if cell else None for cell in stored(episodes, "image")]


def by_task(episodes, task):
    """The episodes of one task."""
    return episodes.filter(lambda name: name == task, input_columns="task")


def relative(paths, root):
    return [Path(path).relative_to(root).as_posix() for path in paths]


def lay_images(root: Path, relative_paths, colour=(200, 30, 30)) -> None:
    """A tiny stand-in PNG at each path (hard links to one file: the loaders only need the paths)."""
    root.mkdir(parents=True, exist_ok=True)
    original = root / ".stand-in.png"
    if not original.exists():
        Image.new("RGB", (4, 4), colour).save(original)
    for path in relative_paths:
        path = root / path
        path.parent.mkdir(parents=True, exist_ok=True)
        os.link(original, path)


def write_json(path: Path, content) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=1))


def link(source: Path, destination: Path) -> None:
    """A real annotation file at its published place in a temporary layout (a link: nothing is copied)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(source, destination)


def score_with_own_answers(episodes) -> dict[str, float]:
    """Each task's mean score through the harness's scoring rule when every question is answered with its answer
    (captions with the names of the concepts present): 1.0 for every task means the harness's metrics apply."""
    scores: dict[str, list[float]] = {}
    for episode in eval_episodes(episodes):
        answer = " and ".join(episode.present) if episode.task == "caption" else episode.answer
        scores.setdefault(episode.task, []).append(question_score(episode, answer))
    return {task: sum(values) / len(values) for task, values in scores.items()}


# -------------------------------------------------------------------------------- Yo'LLaVA, fixture layout


@pytest.fixture
def yollava_fixture(tmp_path):
    """Yo'LLaVA's layout with two concepts: the repository's yollava-data/ and RAP's eval/ text QA."""
    root = tmp_path / "YoLLaVA"
    for concept in ("bo", "mam"):
        lay_images(root, [f"yollava-data/train/{concept}/{index}.png" for index in range(3)])
        lay_images(root, [f"yollava-data/test/{concept}/{index}.png" for index in range(2)])
    # the Google Drive copy keeps retrieved negatives in a sub-folder of train/<concept>/: never a reference
    lay_images(root, ["yollava-data/train/bo/negative_example/76618997.png"])
    write_json(
        root / "yollava-data" / "yollava-visual-qa.json",
        {
            "bo": {
                "./yollava-data/test/bo/0.png": {
                    "question": "What is the primary color of <sks>'s fur?",
                    "options": {"A": "Brown", "B": "Grey"},
                    "correct_answer": "A",
                }
            },
            "mam": {
                "./yollava-data/test/mam/1.png": {
                    "question": "Is <sks> sleeping?",
                    "options": {"A": "Yes", "B": "No"},
                    "correct_answer": "B",
                }
            },
        },
    )
    write_json(
        root / "eval" / "yollava-text-only-qa.json",
        {"bo": {"0": {"question": "Is sks a dog?", "option": {"A": "Yes", "B": "No"}, "correct_answer": "A"}}},
    )
    return root


def test_yollava_fixture_reads_the_published_places(yollava_fixture):
    episodes = load_yollava(yollava_fixture)
    assert episodes.features == EPISODE_FEATURES
    assert Counter(episodes["task"]) == {"recognition": 4 * 2, "vqa": 2, "text_qa": 1}
    recognition = by_task(episodes, "recognition")
    rows = set(zip(relative(image_paths(recognition), yollava_fixture), recognition["target"], recognition["answer"]))
    assert ("yollava-data/test/bo/1.png", "<bo>", "Yes") in rows
    assert ("yollava-data/test/bo/1.png", "<mam>", "No") in rows
    assert recognition[0]["question"] == "Can you see <bo> in this photo? Answer with a single word or phrase."
    text_qa = by_task(episodes, "text_qa")[0]
    assert (text_qa["question"], text_qa["options"], text_qa["answer"]) == ("Is <bo> a dog?", ["Yes", "No"], "Yes")
    references = stored(episodes, "concepts")[0][0]["references"]
    assert relative([reference["path"] for reference in references], yollava_fixture) == [
        f"yollava-data/train/bo/{index}.png" for index in range(3)
    ]
    assert score_with_own_answers(episodes) == {"recognition": 1.0, "vqa": 1.0, "text_qa": 1.0}


def test_yollava_fixture_errors_say_what_was_expected(yollava_fixture):
    (yollava_fixture / "eval" / "yollava-text-only-qa.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"text_qa questions at .*eval/yollava-text-only-qa.json"):
        load_yollava(yollava_fixture)
    assert set(load_yollava(yollava_fixture, split_files={"vqa": None})["task"]) == {"vqa"}
    visual = yollava_fixture / "yollava-data" / "yollava-visual-qa.json"
    content = json.loads(visual.read_text())
    write_json(visual, list(content.values()))
    with pytest.raises(ValueError, match=r"holds a JSON list, expected \{concept: \{key:"):
        load_yollava(yollava_fixture, split_files={"vqa": None})
    write_json(visual, {"bo": list(content["bo"].values())})
    with pytest.raises(ValueError, match=r"bo: expected \{key: \{question, options"):
        load_yollava(yollava_fixture, split_files={"vqa": None})
    content["bo"]["./yollava-data/test/bo/0.png"]["option"] = content["bo"]["./yollava-data/test/bo/0.png"].pop(
        "options"
    )
    write_json(visual, content)
    with pytest.raises(ValueError, match="missing options"):
        load_yollava(yollava_fixture, split_files={"vqa": None})
    with pytest.raises(ValueError, match="Unknown Yo'LLaVA task"):
        load_yollava(yollava_fixture, split_files={"captions": None})


def test_yollava_conflicting_duplicates_are_an_error(tmp_path):
    lay_images(tmp_path, ["yollava-data/train/bo/0.png", "yollava-data/test/bo/0.png"])
    row = {"image": "yollava-data/test/bo/0.png", "question": "", "concept": "bo", "type": "positive"}
    write_json(tmp_path / "recognition_test.json", [{**row, "correct_answer": True}, {**row, "correct_answer": False}])
    with pytest.raises(ValueError, match="different answers"):
        load_yollava(tmp_path, split_files={"recognition": "recognition_test.json"})


# ----------------------------------------------------------------------------------- Yo'LLaVA, real files


@pytest.fixture(scope="module")
def yollava_root(tmp_path_factory):
    """Yo'LLaVA's published layout: stand-in images at the 660 real paths, the real question files linked in."""
    if not YOLLAVA_KIT.is_dir():
        pytest.skip(f"the Yo'LLaVA annotation kit is not at {YOLLAVA_KIT}")
    root = tmp_path_factory.mktemp("yollava")
    lay_images(root, (YOLLAVA_KIT / "image-files.txt").read_text().split())
    link(REAL_FILES["vqa"], root / "yollava-data" / "yollava-visual-qa.json")  # Yo'LLaVA's repository
    link(REAL_FILES["text_qa"], root / "eval" / "yollava-text-only-qa.json")  # RAP's eval/
    return root


@pytest.fixture(scope="module")
def yollava(yollava_root):
    return load_yollava(yollava_root)


@pytest.fixture(scope="module")
def real_files():
    return {task: json.loads(path.read_text()) for task, path in REAL_FILES.items()}


@needs_yollava_kit
def test_yollava_schema_and_task_counts(yollava, real_files):
    assert yollava.features == EPISODE_FEATURES
    counts = Counter(yollava["task"])
    assert counts["vqa"] == sum(len(questions) for questions in real_files["vqa"].values()) == 170
    assert counts["text_qa"] == sum(len(questions) for questions in real_files["text_qa"].values()) == 400
    # the Yo'LLaVA protocol: 333 test photos, each asked about the 40 concepts
    assert Counter(by_task(yollava, "recognition")["answer"]) == {"Yes": 333, "No": 333 * 39}
    assert set(counts) == {"recognition", "vqa", "text_qa"}


@needs_yollava_kit
def test_yollava_recognition_file_gives_the_folder_protocol_once_its_duplicates_are_dropped(
    yollava, yollava_root, real_files
):
    rows = real_files["recognition"]
    positives = [row for row in rows if row["type"] == "positive"]
    quirk = [row for row in rows if row["type"] == "negative" and row["correct_answer"]]
    # the quirk as the kit's README describes it: 333 negative-typed rows labelled true, each a positive's repeat
    assert len(positives) == len(quirk) == 333
    assert {(row["image"], row["concept"]) for row in quirk} == {(row["image"], row["concept"]) for row in positives}

    from_file = load_yollava(yollava_root, split_files={"recognition": REAL_FILES["recognition"]})
    assert from_file.num_rows == 13320

    def questions(episodes):
        return Counter(
            zip(image_paths(episodes), episodes["target"], episodes["answer"], map(tuple, episodes["present"]))
        )

    assert questions(from_file) == questions(by_task(yollava, "recognition"))


@needs_yollava_kit
def test_yollava_recognition_episodes(yollava):
    recognition = by_task(yollava, "recognition")
    row = recognition[0]
    assert row["question"] == f"Can you see {row['target']} in this photo? Answer with a single word or phrase."
    assert [concept["name"] for concept in row["concepts"]] == [row["target"]]
    # the answer agrees with the folder the photo sits in, which `present` names
    for path, target, answer, present in zip(
        image_paths(recognition), recognition["target"], recognition["answer"], recognition["present"]
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
    assert image_paths(vqa)[0].endswith(first_key.removeprefix("./"))


@needs_yollava_kit
def test_yollava_text_qa_has_no_image_and_reads_the_option_key(yollava, real_files):
    text_qa = by_task(yollava, "text_qa")
    assert all(path is None for path in image_paths(text_qa))
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
    assert all(cell is None or cell["bytes"] is None for cell in stored(yollava, "image"))


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
    episodes = load_yollava(yollava_root, split_files={"vqa": None}, num_references=2)
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
    # a concept without its training folder, then questions about photos that are not there
    listed = (YOLLAVA_KIT / "image-files.txt").read_text().split()
    partial = tmp_path / "partial"
    lay_images(partial, ["yollava-data/test/bo/0.png"])
    with pytest.raises(FileNotFoundError, match="training photos of Yo'LLaVA concept"):
        load_yollava(partial, split_files={"vqa": REAL_FILES["vqa"]})
    lay_images(partial, [path for path in listed if path.startswith("yollava-data/train/")])
    asked = {
        key.removeprefix("./") for questions in json.loads(REAL_FILES["vqa"].read_text()).values() for key in questions
    }
    missing = len(asked - {"yollava-data/test/bo/0.png"})
    with pytest.raises(
        FileNotFoundError, match=f"{missing} Yo'LLaVA query photos named in the question files are missing"
    ):
        load_yollava(partial, split_files={"vqa": REAL_FILES["vqa"]})


# ----------------------------------------------------------------------------------- MyVLM, fixture layout


@pytest.fixture
def myvlm_root(tmp_path):
    """Three MyVLM concepts with six photos each and a captions.json that names the concept (MyVLM's data_root)."""
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
    # MyVLM's optional VQA training data sits next to them and is not read
    write_json(root / "Alex" / "additional_llava_vqa_data.json", {"0.jpg": [["What is Alex doing?", "Reading."]]})
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
    assert score_with_own_answers(episodes) == {"caption": 1.0, "recognition": 1.0}


def test_myvlm_references_and_queries_are_disjoint_and_seeded(myvlm_root):
    def split(seed):
        episodes = load_myvlm(myvlm_root, num_references=4, seed=seed)
        captions = by_task(episodes, "caption")
        references = {
            concepts[0]["name"]: [image["path"] for image in concepts[0]["references"]]
            for concepts in stored(captions, "concepts")
        }
        return references, image_paths(captions)

    references, queries = split(0)
    assert all(len(paths) == 4 for paths in references.values())
    assert not set(queries) & {path for paths in references.values() for path in paths}
    assert split(0) == (references, queries)
    assert split(1) != (references, queries)


def test_myvlm_reads_the_augmented_captions_first_as_myvlm_does(myvlm_root):
    write_json(
        myvlm_root / "mug" / "captions_augmented.json",
        {f"{index}.jpg": [f"Mug, augmented {index}."] for index in range(5)},
    )
    captions = by_task(load_myvlm(myvlm_root, num_references=4), "caption")
    mug = [answer for answer, target in zip(captions["answer"], captions["target"]) if target == "<mug>"]
    assert len(mug) == 1 and mug[0].startswith("<mug>, augmented")  # 5 photos listed there, 4 references
    (myvlm_root / "mug" / "captions.json").unlink()
    assert load_myvlm(myvlm_root).num_rows == 5 + 5 * 3  # captions.json is not needed when augmented ones exist


def test_myvlm_errors(myvlm_root, tmp_path):
    with pytest.raises(ValueError, match="none is left to query"):
        load_myvlm(myvlm_root, num_references=6)
    write_json(myvlm_root / "mug" / "captions.json", [["0.jpg", "A mug."]])
    with pytest.raises(ValueError, match=r'holds a JSON list, expected a dict \{"<image>.jpg": \["<caption>"'):
        load_myvlm(myvlm_root)
    write_json(myvlm_root / "mug" / "captions.json", {"0.jpg": "A mug."})
    with pytest.raises(ValueError, match="expected a non-empty list of captions"):
        load_myvlm(myvlm_root)
    (myvlm_root / "mug" / "captions.json").unlink()
    with pytest.raises(FileNotFoundError, match="captions of MyVLM concept 'mug'"):
        load_myvlm(myvlm_root)
    with pytest.raises(FileNotFoundError, match="one folder per concept"):
        load_myvlm(tmp_path / "myvlm" / "dino")


# -------------------------------------------------------------------------------- MC-LLaVA, fixture layout


def choice(question, options, answer):
    return {"Human": question + "".join(f"\n{letter}. {text}" for letter, text in zip("ABCD", options)), "AI": answer}


def text_choice(question, options, answer):
    return {
        "question": question + "".join(f"\n{letter}. {text}" for letter, text in zip("ABCD", options)),
        "answer": answer,
    }


@pytest.fixture
def mc_llava_root(tmp_path):
    """Two scenarios in MC-LLaVA's released layout: Anya_Loid (two_concept/) and A_L_Y (three_concept/).

    Each character: 3 training photos with masks, 2 test photos with choice.json / qa.json / vqa.json; each
    scenario: 2 photos (plus a _som rendering) with position.json and its question files.
    """
    root = tmp_path / "mc-llava"
    write_json(root / "scenarios.json", ["Anya_Loid", "A_L_Y"])
    scenarios = {"two_concept": ("Anya_Loid", ["Anya", "Loid"]), "three_concept": ("A_L_Y", ["A", "L", "Y"])}
    write_json(
        root / "concept_type.json", {c: group for group, (_, characters) in scenarios.items() for c in characters}
    )
    authors = "/workspace/data/MulBench"  # the release names photos with its authors' paths
    for group, (scenario, characters) in scenarios.items():
        for character in characters:
            train = f"{group}/concept/train/{character}"
            lay_images(root, [f"{train}/{index}{suffix}.png" for index in range(3) for suffix in ("", "_mask")])
            write_json(root / train / "caption_llava.json", {"0.png": f"A photo of {character}."})
            test = root / group / "concept" / "test" / character
            lay_images(root, [f"{group}/concept/test/{character}/{index}.png" for index in range(2)])
            label = f"<{character}>"
            write_json(
                test / "choice.json",
                {
                    f"{authors}/{group}/concept/test/{character}/0.png": choice(
                        f"Where is {label}?", ["Inside", "Outside"], "A"
                    )
                },
            )
            write_json(test / "qa.json", [text_choice(f"Is {label} a spy?", ["Yes", "No"], "B")])
            write_json(test / "vqa.json", {"1.png": {"Human": f"What is {label} wearing?", "AI": "A uniform."}})
        multi = root / group / "multi" / scenario
        lay_images(root, [f"{group}/multi/{scenario}/{name}" for name in ("0.png", "0_som.png", "1.png")])
        write_json(multi / "vqa_position.json", {"0.png": [choice("Who is on the left?", characters, "A")]})
        write_json(multi / "qa.json", [text_choice("Who is the eldest?", [f"<{c}>" for c in characters], "B")])
        write_json(multi / "vqa.json", {"0.png": [{"Human": "What are they doing?", "AI": "Eating."}]})
    # two_concept lists the training photos to use; three_concept does not (all of them are used)
    write_json(
        root / "two_concept" / "concept" / "train" / "train.json", {"Anya": ["2.png", "0.png"], "Loid": ["1.png"]}
    )
    multi = root / "two_concept" / "multi" / "Anya_Loid"
    write_json(
        multi / "position.json",
        {
            f"{authors}/two_concept/multi/Anya_Loid/0.png": {"Anya": [10, 20], "Loid": [40, 20]},
            f"{authors}/two_concept/multi/Anya_Loid/1.png": {"Anya": None, "Loid": [5, 5]},
        },
    )
    write_json(
        multi / "choice.json",
        {
            f"{authors}/two_concept/multi/Anya_Loid/0.png": [
                choice("Who stands left?", ["<Anya>", "<Loid>"], "A"),
                {"Human": "Are <Anya> and <Loid> together?\n(A) Yes\n(B) No\nAnswer with a letter.", "AI": "(A)"},
            ]
        },
    )
    write_json(
        root / "three_concept" / "multi" / "A_L_Y" / "position.json",
        {"0.png": {"A": [1, 1], "L": [2, 2], "Y": [3, 3]}, "1.png": {"A": [1, 1]}},
    )
    write_json(
        root / "three_concept" / "multi" / "A_L_Y" / "choice.json",
        {"1.png": [choice("What is <A> holding?", ["A peanut", "A book", "A cup"], "A peanut")]},
    )
    return root


def test_mc_llava_counts_and_schema(mc_llava_root):
    episodes = load_mc_llava(mc_llava_root)
    assert episodes.features == EPISODE_FEATURES
    counts = Counter(episodes["task"])
    assert set(counts) == set(MC_LLAVA_TASKS)  # the paper's tasks; attribute and presence only on request
    # photos: Anya_Loid 2 x 2 own + 2 scenario = 6; A_L_Y 3 x 2 own + 2 scenario = 8 (the _som rendering is no photo)
    # recognition: each photo about each character, and each scenario photo about all of them at once
    assert counts["recognition"] == (6 * 2 + 2) + (8 * 3 + 2)
    assert counts["caption"] == 6 + 8
    assert counts["vqa"] == 5 + 2 + 1  # one choice.json question per character, 2 + 1 in the scenarios
    assert counts["text_qa"] == 5 + 2  # one qa.json question per character and per scenario
    assert score_with_own_answers(episodes) == dict.fromkeys(MC_LLAVA_TASKS, 1.0)


def test_mc_llava_recognition_follows_positions_and_asks_all_characters_at_once(mc_llava_root):
    episodes = by_task(load_mc_llava(mc_llava_root), "recognition")
    rows = list(
        zip(relative(image_paths(episodes), mc_llava_root), episodes["target"], episodes["answer"], episodes["tags"])
    )
    assert ("two_concept/concept/test/Anya/0.png", "<Anya>", "Yes", []) in rows
    assert ("two_concept/concept/test/Anya/0.png", "<Loid>", "No", []) in rows
    assert ("two_concept/multi/Anya_Loid/0.png", "<Anya>", "Yes", ["multi_concept"]) in rows
    assert ("two_concept/multi/Anya_Loid/0.png", "<Loid>", "Yes", ["multi_concept"]) in rows
    assert ("two_concept/multi/Anya_Loid/1.png", "<Anya>", "No", []) in rows  # position.json: only Loid there
    assert ("three_concept/multi/A_L_Y/1.png", "<Y>", "No", []) in rows
    assert (
        episodes[0]["question"]
        == "Can you see <Anya> in this photo? Answer the question using a single word Yes or No."
    )
    together = [
        (path, question, answer)
        for path, question, answer, target in zip(
            relative(image_paths(episodes), mc_llava_root), episodes["question"], episodes["answer"], episodes["target"]
        )
        if target == ""
    ]
    assert together == [
        (
            "two_concept/multi/Anya_Loid/0.png",
            "Can you see <Anya> and <Loid> in this photo? Answer the question using a single word Yes or No.",
            "Yes",
        ),
        (
            "two_concept/multi/Anya_Loid/1.png",
            "Can you see <Anya> and <Loid> in this photo? Answer the question using a single word Yes or No.",
            "No",
        ),
        (
            "three_concept/multi/A_L_Y/0.png",
            "Can you see <A>, <L> and <Y> in this photo? Answer the question using a single word Yes or No.",
            "Yes",
        ),
        (
            "three_concept/multi/A_L_Y/1.png",
            "Can you see <A>, <L> and <Y> in this photo? Answer the question using a single word Yes or No.",
            "No",
        ),
    ]
    # a question about all of them names all of them: the harness puts every one in the prompt
    assert all(name in together[0][1] for name in ("<Anya>", "<Loid>"))


def test_mc_llava_references_follow_train_json_with_masks(mc_llava_root):
    episodes = load_mc_llava(mc_llava_root)
    concepts = {concept["name"]: concept for row in stored(episodes, "concepts") for concept in row}
    assert set(concepts) == {"<Anya>", "<Loid>", "<A>", "<L>", "<Y>"}
    names = {name: [Path(image["path"]).name for image in concept["references"]] for name, concept in concepts.items()}
    assert names["<Anya>"] == ["2.png", "0.png"] and names["<Loid>"] == [
        "1.png"
    ]  # two_concept/concept/train/train.json
    assert names["<Y>"] == ["0.png", "1.png", "2.png"]  # no train.json in three_concept/: every training photo
    assert [Path(image["path"]).name for image in concepts["<Anya>"]["masks"]] == ["2_mask.png", "0_mask.png"]
    capped = {
        concept["name"]: concept
        for row in stored(load_mc_llava(mc_llava_root, num_references=1), "concepts")
        for concept in row
    }
    assert [Path(image["path"]).name for image in capped["<Y>"]["references"]] == ["0.png"]


def test_mc_llava_caption_and_tasks_on_request(mc_llava_root):
    episodes = load_mc_llava(mc_llava_root, tasks=("caption", "attribute", "presence"))
    assert set(episodes["task"]) == {"caption", "attribute", "presence"}
    caption = by_task(episodes, "caption")
    assert caption[0]["question"].startswith("Can you see <Anya>, <Loid> in the image?")
    assert caption[0]["answer"] == "" and caption[0]["present"] == ["<Anya>"]
    presence = by_task(episodes, "presence")
    answers = dict(zip(relative(image_paths(presence), mc_llava_root), presence["answer"]))
    assert answers["two_concept/multi/Anya_Loid/0.png"] == "<Anya>, <Loid>"
    assert answers["two_concept/multi/Anya_Loid/1.png"] == "<Loid>"
    attribute = by_task(episodes, "attribute")
    assert attribute.num_rows == 5 + 2
    assert (attribute[0]["question"], attribute[0]["answer"], attribute[0]["options"]) == (
        "What is <Anya> wearing?",
        "A uniform.",
        [],
    )
    with pytest.raises(ValueError, match=r"Unknown MC-LLaVA task\(s\) \['grounding'\]"):
        load_mc_llava(mc_llava_root, tasks=("grounding",))


def test_mc_llava_choice_questions_are_split_into_stem_and_options(mc_llava_root):
    episodes = load_mc_llava(mc_llava_root)
    vqa = by_task(episodes, "vqa")
    single = vqa[0]
    assert (single["question"], single["options"], single["answer"]) == (
        "Where is <Anya>?",
        ["Inside", "Outside"],
        "Inside",
    )
    assert single["target"] == "<Anya>" and single["tags"] == []
    scenario = [row for row in vqa if row["question"] == "Are <Anya> and <Loid> together?"][0]
    assert (
        scenario["options"] == ["Yes", "No"] and scenario["answer"] == "Yes"
    )  # "(A)"; the instruction after is left out
    assert scenario["target"] == "" and scenario["tags"] == ["multi_concept"]
    holding = [row for row in vqa if row["question"] == "What is <A> holding?"][0]
    assert holding["answer"] == "A peanut" and holding["present"] == ["<A>"]  # the answer as the option's text
    text_qa = by_task(episodes, "text_qa")
    assert text_qa["options"][0] == ["Yes", "No"] and text_qa["answer"][0] == "No"
    assert (
        text_qa["options"][2] == ["<Anya>", "<Loid>"]
        and text_qa["answer"][2] == "<Loid>"
        and text_qa["target"][2] == ""
    )
    assert all(path is None for path in image_paths(text_qa))


@pytest.mark.skipif(not MC_LLAVA_KIT.is_dir(), reason=f"MC-LLaVA's templates are not at {MC_LLAVA_KIT}")
def test_mc_llava_recognition_worded_by_the_real_templates(mc_llava_root):
    template_file = MC_LLAVA_KIT / "recognize_positive_template.json"
    questions = [entry["Question"] for entry in json.loads(template_file.read_text())]
    episodes = by_task(load_mc_llava(mc_llava_root, recognition_templates=template_file), "recognition")
    with_names = [episode for episode in eval_episodes(episodes)]
    assert all(episode.named_concepts for episode in with_names)
    singles = [(question, target) for question, target in zip(episodes["question"], episodes["target"]) if target]
    assert all(question.endswith(" Answer the question using a single word Yes or No.") for question, _ in singles)
    assert {
        question.removesuffix(" Answer the question using a single word Yes or No.").replace(target, "<sks>")
        for question, target in singles
    } <= set(questions)
    assert len(set(episodes["question"])) > 10


def test_mc_llava_errors_say_what_was_expected(mc_llava_root):
    anya = mc_llava_root / "two_concept" / "concept" / "test" / "Anya"
    write_json(anya / "vqa.json", {"7.png": {"Human": "What is <Anya> doing?", "AI": "Reading."}})
    with pytest.raises(FileNotFoundError, match="asks about 7.png"):
        load_mc_llava(mc_llava_root, tasks=("attribute",))
    (anya / "choice.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"MC-LLaVA's choice.json \(the vqa questions\).*Leave 'vqa' out"):
        load_mc_llava(mc_llava_root)
    assert load_mc_llava(mc_llava_root, tasks=("recognition",)).num_rows == 40
    multi = mc_llava_root / "two_concept" / "multi" / "Anya_Loid"
    positions = json.loads((multi / "position.json").read_text())
    write_json(multi / "position.json", {"0.png": {"Anya": [1, 1], "Bond": [2, 2]}})
    with pytest.raises(ValueError, match=r"places \['Bond'\] in 0.png"):
        load_mc_llava(mc_llava_root, tasks=("recognition",))
    write_json(multi / "position.json", {"0.png": {"Anya": [1, 1]}})
    with pytest.raises(ValueError, match=r"has no entry for \['1.png'\]"):
        load_mc_llava(mc_llava_root, tasks=("recognition",))
    write_json(multi / "position.json", positions)
    write_json(multi / "qa.json", [{"question": "How are they related? A) Family B) Strangers", "answer": "A"}])
    with pytest.raises(ValueError, match="one option per line"):
        load_mc_llava(mc_llava_root, tasks=("text_qa",))
    write_json(multi / "qa.json", [{"Human": "How are they related?", "AI": "A"}])
    with pytest.raises(ValueError, match="missing question, answer"):
        load_mc_llava(mc_llava_root, tasks=("text_qa",))
    (multi / "position.json").unlink()
    with pytest.raises(FileNotFoundError, match="position.json"):
        load_mc_llava(mc_llava_root, tasks=("recognition",))
    write_json(mc_llava_root / "scenarios.json", ["Bond_Yor"])
    with pytest.raises(FileNotFoundError, match="multi/Bond_Yor"):
        load_mc_llava(mc_llava_root)
    write_json(mc_llava_root / "scenarios.json", {"Bond_Yor": 2})
    with pytest.raises(ValueError, match=r'expected a list of scenario names, \["Alex_Gloria_Marty"'):
        load_mc_llava(mc_llava_root)
    (mc_llava_root / "scenarios.json").unlink()
    with pytest.raises(FileNotFoundError, match="scenarios.json"):
        load_mc_llava(mc_llava_root)


# ------------------------------------------------------------------------------------- RAP, fixture layout


def rap_database(concepts, folder="example_database", extra=None):
    """A database.json in RAP's shape: concept_dict (name, image, info, category) and path_to_concept."""
    content = {"concept_dict": {}, "path_to_concept": {}}
    for name in concepts:
        image = f"{folder}/{name}.png"
        content["concept_dict"][f"<{name}>"] = {
            "name": name,
            "image": image,
            "info": f"<{name}> is a thing called {name}.",
            "category": "toy",
        }
        content["path_to_concept"][image] = f"<{name}>"
    for path, name in (extra or {}).items():
        content["path_to_concept"][path] = f"<{name}>"
    return content


@pytest.fixture
def rap_root(tmp_path):
    """RAP's working directory: example_database/, eval/recognition_test.json, eval/caption.json and the photos."""
    root = tmp_path / "RAP-MLLM"
    lay_images(root, ["example_database/bo.png", "example_database/mam.png", "example_database/bo_2.png"])
    write_json(
        root / "example_database" / "database.json",
        rap_database(["bo", "mam"], extra={"example_database/bo_2.png": "bo"}),
    )
    lay_images(root, ["yollava-data/test/bo/0.png", "yollava-data/test/mam/0.png", "multi/0.png"])
    question = "<image>\nIs <{0}> in this image? Answer with a single word or phrase."
    rows = [
        {
            "image": f"yollava-data/test/{image}/0.png",
            "question": question.format(concept),
            "concept": concept,
            "type": "positive" if image == concept else "negative",
            "correct_answer": image == concept,
        }
        for image in ("bo", "mam")
        for concept in ("bo", "mam")
    ]
    rows.append({**rows[0], "type": "negative"})  # the real file's quirk: a positive repeated as a negative-typed row
    write_json(root / "eval" / "recognition_test.json", rows)
    write_json(root / "eval" / "caption.json", {"yollava-data/test/bo/0.png": ["bo"], "multi/0.png": ["<bo>", "mam"]})
    return root


def test_rap_recognition_and_captions(rap_root):
    episodes = load_rap(rap_root)
    assert episodes.features == EPISODE_FEATURES
    assert Counter(episodes["task"]) == {"recognition": 4, "caption": 2}  # the repeated row dropped
    recognition = by_task(episodes, "recognition")
    assert Counter(recognition["answer"]) == {"Yes": 2, "No": 2}
    assert recognition[0]["question"] == "Is <bo> in this image? Answer with a single word or phrase."
    assert recognition[1]["present"] == ["<bo>"] and recognition[1]["target"] == "<mam>"
    caption = by_task(episodes, "caption")
    assert caption["question"] == [
        "Give a caption of the image of <bo>.",
        "Give a caption of the image of <bo> and <mam>.",
    ]
    assert caption["present"] == [["<bo>"], ["<bo>", "<mam>"]] and caption["tags"] == [[], ["multi_concept"]]
    assert caption["target"] == ["<bo>", ""]
    assert score_with_own_answers(episodes) == {"recognition": 1.0, "caption": 1.0}


def test_rap_concepts_come_from_the_database(rap_root):
    concepts = {concept["name"]: concept for row in stored(load_rap(rap_root), "concepts") for concept in row}
    assert set(concepts) == {"<bo>", "<mam>"}
    # the concept_dict image first, then the other photos path_to_concept maps to the concept
    assert relative([image["path"] for image in concepts["<bo>"]["references"]], rap_root) == [
        "example_database/bo.png",
        "example_database/bo_2.png",
    ]
    assert concepts["<bo>"]["description"] == "<bo> is a thing called bo."
    assert load_rap(rap_root, split_files={"caption": None}).num_rows == 2
    assert load_rap(rap_root, database="example_database").num_rows == 6


def test_rap_errors_say_what_was_expected(rap_root):
    (rap_root / "eval" / "caption.json").rename(rap_root / "eval" / "my_captions.json")
    with pytest.raises(FileNotFoundError, match=r"eval/caption.json.*publishes this file's format, not its name"):
        load_rap(rap_root)
    assert load_rap(rap_root, split_files={"recognition": None, "caption": "eval/my_captions.json"}).num_rows == 6
    write_json(rap_root / "eval" / "my_captions.json", {"multi/0.png": ["bo", "dug"]})
    with pytest.raises(ValueError, match="names <dug>, which .*database.json does not hold"):
        load_rap(rap_root, split_files={"caption": "eval/my_captions.json"})
    write_json(rap_root / "eval" / "my_captions.json", {"multi/0.png": "bo"})
    with pytest.raises(ValueError, match="expected a non-empty list of concept names"):
        load_rap(rap_root, split_files={"caption": "eval/my_captions.json"})
    with pytest.raises(ValueError, match=r"Unknown RAP task\(s\) \['vqa'\]"):
        load_rap(rap_root, split_files={"vqa": None})
    write_json(rap_root / "full_database" / "database.json", rap_database(["bo"], folder="example_database"))
    with pytest.raises(ValueError, match="found 2: .*Pass database="):
        load_rap(rap_root, split_files={"recognition": None})
    assert load_rap(rap_root, split_files={"recognition": None}, database="example_database").num_rows == 4
    database = rap_root / "example_database" / "database.json"
    write_json(database, {"concept_dict": rap_database(["bo"])["concept_dict"]})
    with pytest.raises(ValueError, match="missing path_to_concept"):
        load_rap(rap_root, database="example_database")
    write_json(database, rap_database(["bo", "mam"], extra={"example_database/bo_3.png": "bo"}))
    with pytest.raises(FileNotFoundError, match=r"1 photos of RAP concept '<bo>' .*bo_3.png"):
        load_rap(rap_root, database="example_database")
    (rap_root / "full_database" / "database.json").unlink()
    database.unlink()
    with pytest.raises(FileNotFoundError, match="Expected one RAP database .*found 0"):
        load_rap(rap_root)


# ----------------------------------------------------------------------------------------- RAP, real files


@needs_rap_kit
def test_rap_reads_its_real_database_and_recognition_file(tmp_path):
    real = json.loads((RAP_KIT / "database.json").read_text())
    root = tmp_path / "RAP-MLLM"
    lay_images(root, list(real["path_to_concept"]))
    link(RAP_KIT / "database.json", root / "example_database" / "database.json")
    lay_images(root, (YOLLAVA_KIT / "image-files.txt").read_text().split())
    link(YOLLAVA_KIT / "recognition_test.json", root / RAP_FILES["recognition"])
    # RAP's example database holds 10 of the 40 concepts: its evaluation needs the full database
    with pytest.raises(ValueError, match="which .*database.json does not hold \\(it holds 10 concepts\\)"):
        load_rap(root, split_files={"recognition": None})

    # a full database in the same shape: the 10 real entries, and one training photo for each other concept
    full = json.loads(json.dumps(real))
    trained = sorted({Path(path).parent.name for path in (YOLLAVA_KIT / "image-files.txt").read_text().split()})
    for name in trained:
        if f"<{name}>" not in full["concept_dict"]:
            image = f"yollava-data/train/{name}/0.png"
            full["concept_dict"][f"<{name}>"] = {"name": name, "image": image, "info": "", "category": "thing"}
            full["path_to_concept"][image] = f"<{name}>"
    write_json(root / "full_database" / "database.json", full)
    write_json(
        root / "eval" / "caption.json",
        {"yollava-data/test/bo/0.png": ["bo"], "yollava-data/test/mam/0.png": ["mam", "bo"]},
    )
    episodes = load_rap(root, database="full_database")
    assert Counter(episodes["task"]) == {"recognition": 13320, "caption": 2}
    assert Counter(by_task(episodes, "recognition")["answer"]) == {"Yes": 333, "No": 12987}
    first = json.loads((YOLLAVA_KIT / "recognition_test.json").read_text())[0]
    assert episodes[0]["question"] == first["question"].removeprefix("<image>\n")
    assert "<image>" not in "".join(episodes["question"])
    concepts = {concept["name"]: concept for row in stored(episodes, "concepts") for concept in row}
    assert concepts["<bo>"]["description"] == real["concept_dict"]["<bo>"]["info"]
    assert relative([image["path"] for image in concepts["<bo>"]["references"]], root) == [
        real["concept_dict"]["<bo>"]["image"]
    ]
    assert concepts["<mam>"]["description"] is None  # an empty info is no description


# ---------------------------------------------------------------------------------------- the command line


def test_icpt_eval_accepts_every_benchmark():
    from icpt.commands.eval import build_parser

    for benchmark in ("yollava", "myvlm", "mc_llava", "rap"):
        args = build_parser().parse_args(["--benchmark", benchmark, "--benchmark-root", "data"])
        assert (args.benchmark, args.benchmark_root) == (benchmark, "data")
