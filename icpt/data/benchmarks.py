"""Loaders that turn the public personalization benchmarks' layouts into the project's episode datasets.

Each loader reads a local copy of a benchmark as its authors publish it (the images are not downloadable
here, and the annotation files of Yo'LLaVA are CC BY-NC 4.0: the project never ships them) and returns a
`datasets.Dataset` with exactly `icpt.episodes.EPISODE_FEATURES`, so the evaluation harness runs on it
unchanged (`icpt eval --benchmark {yollava,myvlm,mc_llava,rap} --benchmark-root DIR`). Images are referenced
by absolute path and decoded lazily by `datasets.Image`, never loaded at load time. A loader that meets
another layout (a missing file or folder, a JSON file of another shape) raises an error that names what it
expected and where.

Each benchmark's episodes carry the tasks its paper reports, so the harness computes the paper's metrics:

- `load_yollava`, Yo'LLaVA: recognition (weighted accuracy), vqa and text_qa (two-option accuracy).
  Checked against WisconsinAIVision/YoLLaVA @ dd6e47aa28b489b8acbfff23eab14e44278fb7ae: `README.md`,
  `test-sks-acc.py` (the recognition protocol), `yollava-data/` (images, `yollava-visual-qa.json`); the
  text-only QA and the recognition file against Hoar012/RAP-MLLM `eval/` (commit below).
- `load_myvlm`, MyVLM: caption (the concept's name named: recall) and recognition (Yo'LLaVA protocol). Checked
  against snap-research/MyVLM @ 0a2a8146a888965caefa1a30dc37274acd11cb33: `README.md` (Data Setup),
  `concept_embedding_training/data_utils.py`, `myvlm/common.py` (`VLM_TO_PROMPTS`).
- `load_mc_llava`, MC-LLaVA: recognition (weighted), vqa (visual multiple choice), text_qa (text-only
  multiple choice) and caption (name accuracy, see below). Checked against arctanxarc/MC-LLaVA @
  be8a62c5f0f35f9bb682d4ee4fd476b01a671db0: `README.md` (File Structure), `llava/dataset.py` (the test
  datasets), `eval/eval.py` (the metrics), `eval/gen_som.py`, `train/train_joint.py` (`train.json`).
- `load_rap`, RAP: recognition (weighted) and caption (every concept asked is present: recall). Checked against Hoar012/RAP-MLLM @
  3c0c9c2e5f1ffe63911e38eddf244202fb3813ed: `README.md`, `example_database/database.json`, `retriever.py`,
  `eval/recognition.py`, `eval/caption.py`, `eval/recognition_test.json`.

The real annotation files these repositories publish (and `../shared/benchmark-formats` holds, at those
commits) are read by the tests; the layouts whose test files are not published (MyVLM's, MC-LLaVA's,
RAP's caption file) are tested on fixtures built from the code that reads them.

What the harness cannot report as the papers do: MC-LLaVA's open questions (`vqa.json`) are scored by a
character BLEU there (the harness has no BLEU: they load only on request, as `attribute`, exact match);
RAP's paper also reports caption precision (no name of a concept not in the photo) and F1, and MyVLM's
scores captions beyond the name; the harness reports name accuracy (`icpt/metrics/name_accuracy`), which is the
papers' name recall where every concept a question names is in the photo (MyVLM, RAP) and, on MC-LLaVA's captions
(which name every character of the scenario), also counts a character named but absent as wrong, so that a caption
naming every character cannot score 1.

Example:

```python
>>> from icpt.data.benchmarks import load_yollava
>>> episodes = load_yollava("/data/YoLLaVA")  # a clone of Yo'LLaVA's repository (with its images) + RAP's text QA
>>> episodes.filter(lambda task: task == "recognition", input_columns="task").num_rows
13320
```
"""

import json
import os
import random
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from datasets import Dataset

from icpt.episodes import EPISODE_FEATURES

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")

# Where each Yo'LLaVA question file is published, relative to the dataset root; the first that exists is
# read. The visual QA is in Yo'LLaVA's repository (`yollava-data/`) and in RAP's (`eval/`, `sks` without
# brackets); the text-only QA only in RAP's. Recognition has no file in Yo'LLaVA: its protocol
# (`test-sks-acc.py`) asks every test photo about every concept. RAP's `eval/recognition_test.json` holds
# the same questions and can be read instead (`split_files={"recognition": ...}`).
YOLLAVA_FILES = {
    "recognition": (),
    "vqa": ("yollava-data/yollava-visual-qa.json", "eval/yollava-visual-qa.json"),
    "text_qa": ("eval/yollava-text-only-qa.json",),
}

# The recognition question of the Yo'LLaVA protocol (`test-sks-acc.py`; also used for MyVLM's concepts).
RECOGNITION_QUESTION = "Can you see {label} in this photo? Answer with a single word or phrase."
# MyVLM's captioning instruction for LLaVA (`VLM_TO_PROMPTS` in `myvlm/common.py`).
MYVLM_CAPTION_QUESTION = "Please caption this image of {label}."
# MC-LLaVA's test questions, as its evaluation code (`llava/dataset.py`, `eval/eval.py`) writes them.
MC_LLAVA_RECOGNITION_INSTRUCTION = "Answer the question using a single word Yes or No."
MC_LLAVA_RECOGNITION_QUESTION = "Can you see {label} in this photo? " + MC_LLAVA_RECOGNITION_INSTRUCTION
MC_LLAVA_CAPTION_QUESTION = (
    "Can you see {labels} in the image? Don't answer the question but remember it, and only response a "
    "detailed caption for the image. Your caption:"
)
# The project's own presence question (MC-LLaVA has none; `load_mc_llava(tasks=...)` adds it on request).
PRESENCE_QUESTION = "Which of {labels} are in this photo? Answer with their names, separated by commas, or None."
# RAP's caption instruction (`eval/caption.py`), after the concepts its retriever puts in the prompt.
RAP_CAPTION_QUESTION = "Give a caption of the image of {labels}."

# The tasks each loader produces by default (those its paper reports) and those it can add on request.
MC_LLAVA_TASKS = ("recognition", "vqa", "text_qa", "caption")
MC_LLAVA_EXTRA_TASKS = ("attribute", "presence")
RAP_FILES = {"recognition": "eval/recognition_test.json", "caption": "eval/caption.json"}


def concept_label(name: str) -> str:
    """The label a concept is written with in questions: `bo` -> `<bo>` (a label stays as it is)."""
    return name if name.startswith("<") and name.endswith(">") else f"<{name}>"


def _natural_key(path: Path) -> list:
    # "10.png" after "9.png"
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _is_derived_image(path: Path) -> bool:
    # masks and MC-LLaVA's set-of-mark / box renderings sit next to the photos
    return path.stem.endswith(("_mask", "_som", "_bbox"))


def _require(path: Path, what: str, hint: str = "") -> Path:
    if not path.exists():
        raise FileNotFoundError(f"Expected {what} at {path}, but it does not exist.{' ' + hint if hint else ''}")
    return path


def _images_in(folder: Path, what: str) -> list[Path]:
    """The photos in a folder (masks and renderings left out), in natural order."""
    _require(folder, what)
    images = sorted(
        (path for path in folder.iterdir() if path.suffix.lower() in IMAGE_EXTENSIONS and not _is_derived_image(path)),
        key=_natural_key,
    )
    if not images:
        raise FileNotFoundError(f"Expected {what} in {folder}, but it holds no {'/'.join(IMAGE_EXTENSIONS)} image.")
    return images


def _read_json(path: Path, what: str, hint: str = "", shape: type | None = None, expected: str = ""):
    """A JSON file's content; with `shape`, a `ValueError` that quotes `expected` when its top level is not one."""
    _require(path, what, hint)
    try:
        with open(path, encoding="utf-8") as file:
            content = json.load(file)
    except json.JSONDecodeError as error:
        raise ValueError(f"{what} at {path} is not valid JSON: {error}") from error
    if shape is not None and not isinstance(content, shape):
        raise ValueError(
            f"{what} at {path} holds a JSON {type(content).__name__}, expected {expected or shape.__name__}."
        )
    return content


def _keys(entry, keys: Iterable[str], where: str, expected: str) -> None:
    """A `ValueError` naming the missing keys when `entry` is not a dict holding all of `keys`."""
    missing = [key for key in keys if not isinstance(entry, dict) or key not in entry]
    if missing:
        raise ValueError(f"{where}: expected {expected}, found {entry!r} (missing {', '.join(missing)}).")


def _check_images_exist(paths: Iterable[Path], what: str) -> None:
    missing = sorted({str(path) for path in paths if not path.is_file()})
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise FileNotFoundError(f"{len(missing)} {what} are missing: {shown}.")


def _check_num_references(num_references: int | None) -> None:
    if num_references is not None and (not isinstance(num_references, int) or num_references < 1):
        raise ValueError(f"num_references must be a positive integer or None (all references), got {num_references!r}.")


def _check_tasks(tasks: Iterable[str] | None, default: tuple, extra: tuple, benchmark: str) -> tuple:
    if tasks is None:
        return default
    tasks = tuple(tasks)
    unknown = sorted(set(tasks) - set(default) - set(extra))
    if unknown or not tasks:
        raise ValueError(
            f"Unknown {benchmark} task(s) {unknown} in tasks: the tasks are {list(default + extra)} "
            f"(default {list(default)})."
        )
    return tasks


def _concept(
    name: str, references: list[Path], masks: list[Path] | None = None, description: str | None = None
) -> dict:
    return {
        "name": concept_label(name),
        "references": [str(path) for path in references],
        "masks": [str(path) for path in masks or []],
        "description": description,
    }


def _episode(
    concepts: list[dict],
    image: Path | None,
    question: str,
    answer: str,
    task: str,
    target: str = "",
    options: list[str] | None = None,
    present: list[str] | None = None,
    tags: list[str] | None = None,
) -> dict:
    return {
        "concepts": concepts,
        "image": None if image is None else str(image),
        "question": question,
        "answer": answer,
        "task": task,
        "target": target,
        "options": options or [],
        "present": present or [],
        "tags": tags or [],
    }


def _to_dataset(rows: list[dict]) -> Dataset:
    if not rows:
        return Dataset.from_dict({name: [] for name in EPISODE_FEATURES}, features=EPISODE_FEATURES)
    return Dataset.from_list(rows, features=EPISODE_FEATURES)


def _yes_no(value: bool) -> str:
    return "Yes" if value else "No"


def _recognition_file_rows(path: Path, what: str, hint: str = "") -> dict[tuple[str, str], dict]:
    """`{(image, concept): row}` of a recognition file in RAP's format (`eval/recognition_test.json`).

    The file is a list of `{image, question, concept, type, correct_answer}`. **Quirk of the real file:**
    333 rows are typed `negative` yet labelled `true`; each repeats a positive row exactly (same image,
    same concept). Rows are keyed by (image, concept) and repeats are dropped, so every photo is asked
    about every concept once, as the Yo'LLaVA protocol counts; `type` is never read. A repeat whose
    `correct_answer` disagrees with the first occurrence raises a `ValueError`.
    """
    expected = "a list of {image, question, concept, type, correct_answer} rows (RAP's eval/recognition_test.json)"
    rows: dict[tuple[str, str], dict] = {}
    for index, entry in enumerate(_read_json(path, what, hint, shape=list, expected=expected)):
        _keys(entry, ("image", "question", "concept", "correct_answer"), f"{path}, row {index}", expected)
        key = (entry["image"], entry["concept"])
        if key in rows and bool(rows[key]["correct_answer"]) != bool(entry["correct_answer"]):
            raise ValueError(
                f"The recognition file asks about {entry['concept']!r} in {entry['image']} twice with "
                "different answers: fix one of the two rows."
            )
        rows.setdefault(key, entry)
    return rows


def _present_by_image(rows: Mapping[tuple[str, str], dict]) -> dict[str, list[str]]:
    # who is in each photo: the concepts the file answers yes for
    present: dict[str, list[str]] = {}
    for (image, concept), entry in rows.items():
        present.setdefault(image, [])
        if entry["correct_answer"]:
            present[image].append(concept_label(concept))
    return present


# ----------------------------------------------------------------------------------------------- Yo'LLaVA


def _name_yollava_concept(text: str, name: str) -> str:
    # Yo'LLaVA writes the concept `<sks>` in visual questions and bare `sks` in text-only ones (and in RAP's copy)
    return re.sub(r"<sks>|\bsks\b", concept_label(name), text)


def _yollava_file(root: Path, task: str, path: str | os.PathLike | None, hint: str) -> Path:
    """The question file of a task: `path` (relative to `root` unless absolute), else its first published place."""
    if path is not None:
        return root / Path(path)
    candidates = [root / candidate for candidate in YOLLAVA_FILES[task]]
    found = next((candidate for candidate in candidates if candidate.is_file()), None)
    if found is None:
        where = " or ".join(str(candidate) for candidate in candidates)
        raise FileNotFoundError(f"Expected Yo'LLaVA's {task} questions at {where}, but none exists. {hint}")
    return found


def load_yollava(
    root: str | os.PathLike,
    split_files: Mapping[str, str | os.PathLike | None] | None = None,
    num_references: int | None = None,
) -> Dataset:
    """Load Yo'LLaVA's test set as episodes: recognition, two-option visual QA and text-only QA.

    Expected layout: a clone of Yo'LLaVA's repository with its images (`git lfs pull`), plus RAP's `eval/`
    folder for the text-only QA, which only RAP publishes:

    ```
    root/
    ├── yollava-data/train/<concept>/<n>.png          the concept's reference photos (sub-folders such as
    │                                                  negative_example/ are not read)
    ├── yollava-data/test/<concept>/<n>.png           the query photos
    ├── yollava-data/yollava-visual-qa.json           {concept: {"./yollava-data/test/<c>/<n>.png":
    │                                                      {question, options, correct_answer}}}
    │                                                  (or RAP's copy, eval/yollava-visual-qa.json)
    └── eval/yollava-text-only-qa.json                {concept: {"0": {question, option, correct_answer}}}
    ```

    Every episode holds one concept, `<concept>`, whose references are its training photos (the first
    `num_references` in natural order, all of them when None or when there are fewer).

    - recognition, as Yo'LLaVA's `test-sks-acc.py` asks it: every test photo about every concept ("Can you
      see <bo> in this photo? Answer with a single word or phrase."), "Yes" when the photo is in the
      concept's own test folder: 333 positives and 12,987 negatives on the real data. `present` is the
      concept whose folder holds the photo. With `split_files={"recognition": "eval/recognition_test.json"}`
      the rows of RAP's recognition file are read instead (the same 13,320 questions once its 333
      duplicated rows are dropped; see `_recognition_file_rows`).
    - vqa: one episode per question of the visual file; `sks` becomes the label, `options` are the texts
      of A and B in order, the answer is the correct option's text.
    - text_qa: the same for the text-only file (whose key is `option`, not `options`), without image.
      The file is kept as is: two questions of `tokyo-keyboard` offer "No" twice, and 390 of its 400
      answers are option A.

    Args:
        root: the folder that holds `yollava-data/` (and, by default, the question files).
        split_files: which tasks to load and from which file, `{task: path}` with tasks among
            `YOLLAVA_FILES`' keys; relative paths are read from `root`, None means the default (the test
            folders for recognition, the published places for the QA files). Defaults to all three tasks.
        num_references: how many training photos of each concept become its references (None: all).

    Raises:
        FileNotFoundError: a folder, question file or photo the questions refer to is missing.
        ValueError: an unknown task in `split_files`, a question file of another shape, or an invalid
            `num_references`.

    Example:

    ```python
    >>> episodes = load_yollava("/data/YoLLaVA", split_files={"vqa": None}, num_references=3)
    >>> episodes[0]["question"]
    'What animal does <shiba-gray> resemble?'
    ```
    """
    _check_num_references(num_references)
    root = Path(root).resolve()
    requested = dict.fromkeys(YOLLAVA_FILES) if split_files is None else dict(split_files)
    unknown = sorted(set(requested) - set(YOLLAVA_FILES))
    if unknown:
        raise ValueError(f"Unknown Yo'LLaVA task(s) {unknown} in split_files: the tasks are {sorted(YOLLAVA_FILES)}.")
    data_dir = _require(root / "yollava-data", "Yo'LLaVA's image folder `yollava-data/` (train/ and test/)")
    hint = "Pass split_files={task: path} to read it from elsewhere, or leave that task out."

    concepts: dict[str, dict] = {}

    def concept(name: str) -> dict:
        if name not in concepts:
            references = _images_in(data_dir / "train" / name, f"the training photos of Yo'LLaVA concept {name!r}")
            concepts[name] = _concept(name, references[:num_references])
        return concepts[name]

    rows = []
    query_images = set()
    if "recognition" in requested and requested["recognition"] is None:
        # test-sks-acc.py: for each concept, every photo of every test folder; "Yes" in its own folder
        test_dir = _require(data_dir / "test", "Yo'LLaVA's test folders `yollava-data/test/<concept>/`")
        names = [path.name for path in sorted(test_dir.iterdir(), key=_natural_key) if path.is_dir()]
        photos = {name: _images_in(test_dir / name, f"the test photos of Yo'LLaVA concept {name!r}") for name in names}
        for name in names:
            for folder in names:
                for image in photos[folder]:
                    rows.append(
                        _episode(
                            [concept(name)],
                            image,
                            RECOGNITION_QUESTION.format(label=concept_label(name)),
                            _yes_no(folder == name),
                            "recognition",
                            target=concept_label(name),
                            present=[concept_label(folder)],
                        )
                    )
    elif "recognition" in requested:
        path = root / Path(requested["recognition"])
        entries = _recognition_file_rows(path, "the recognition file (RAP's eval/recognition_test.json)", hint)
        present = _present_by_image(entries)
        for (image_key, name), entry in entries.items():
            image = root / image_key
            query_images.add(image)
            rows.append(
                _episode(
                    [concept(name)],
                    image,
                    RECOGNITION_QUESTION.format(label=concept_label(name)),
                    _yes_no(entry["correct_answer"]),
                    "recognition",
                    target=concept_label(name),
                    present=present[image_key],
                )
            )
    for task, option_key, what in (("vqa", "options", "visual QA"), ("text_qa", "option", "text-only QA")):
        if task not in requested:
            continue
        path = _yollava_file(root, task, requested[task], hint)
        expected = f"{{question, {option_key}: {{A, B}}, correct_answer}}"
        questions_by_concept = _read_json(
            path, f"Yo'LLaVA's {what} file", hint, shape=dict, expected=f"{{concept: {{key: {expected}}}}}"
        )
        for name, questions in questions_by_concept.items():
            if not isinstance(questions, dict):
                raise ValueError(f"{path}, {name}: expected {{key: {expected}}}, found {questions!r}.")
            for key, entry in questions.items():
                _keys(entry, ("question", option_key, "correct_answer"), f"{path}, {name}, {key}", expected)
                options = [entry[option_key][letter] for letter in sorted(entry[option_key])]
                image = Path(os.path.normpath(root / key)) if task == "vqa" else None
                if image is not None:
                    query_images.add(image)
                rows.append(
                    _episode(
                        [concept(name)],
                        image,
                        _name_yollava_concept(entry["question"], name),
                        entry[option_key][entry["correct_answer"]],
                        task,
                        target=concept_label(name),
                        options=options,
                        present=[concept_label(name)] if task == "vqa" else [],
                    )
                )
    _check_images_exist(query_images, "Yo'LLaVA query photos named in the question files")
    return _to_dataset(rows)


# ------------------------------------------------------------------------------------------------- MyVLM


def load_myvlm(root: str | os.PathLike, num_references: int = 4, seed: int = 0) -> Dataset:
    """Load MyVLM's concept set as captioning and recognition episodes.

    Expected layout (MyVLM's `data_root`, as its README and `concept_embedding_training/data_utils.py` read it;
    the released object set has 29 concepts of about 10 photos with 5 captions each):

    ```
    root/
    └── <concept>/
        ├── <image>.jpg ...
        ├── captions.json or captions_augmented.json    {"<image>.jpg": ["<caption>", ...], ...}
        └── additional_llava_vqa_data.json              (optional, MyVLM's VQA training data: not read)
    ```

    The images of a concept are the keys of its captions file: `captions_augmented.json` when it exists,
    else `captions.json`, as MyVLM reads them. As in MyVLM (`batch_size` 4), `num_references` of them,
    drawn at random with `seed` (not MyVLM's own draw), are the concept's references and the rest its
    queries (at least one must remain). The concept's name in the captions (the folder name, matched as a
    whole word, case-insensitively: MyVLM replaces `name` for objects and `name.title()` for people)
    becomes its label, `<concept>`.

    - caption: one episode per query photo, asked with MyVLM's LLaVA instruction ("Please caption this
      image of <c>."); the answer is the photo's first caption; `present` is `[<c>]`, which name accuracy
      (MyVLM's "recall": the caption names the concept) is scored against.
    - recognition (Yo'LLaVA protocol): every query photo of every concept is asked about every
      concept, one concept per episode: "Yes" for its own, "No" for the others.

    Args:
        root: the folder that holds one sub-folder per concept.
        num_references: how many photos of each concept become its references.
        seed: the seed of the reference / query split.

    Raises:
        FileNotFoundError: no concept folder, a missing captions file or a missing photo.
        ValueError: a captions file of another shape, a concept with no photo left to query, or an invalid
            `num_references`.

    Example:

    ```python
    >>> episodes = load_myvlm("/data/myvlm", num_references=4)
    >>> sorted(set(episodes["task"]))
    ['caption', 'recognition']
    ```
    """
    _check_num_references(num_references)
    root = _require(Path(root).resolve(), "the MyVLM data root")
    folders = sorted((path for path in root.iterdir() if path.is_dir()), key=_natural_key)
    if not folders:
        raise FileNotFoundError(
            f"Expected one folder per concept in {root} (<concept>/<image>.jpg and captions.json), found none."
        )
    generator = random.Random(seed)
    expected = 'a dict {"<image>.jpg": ["<caption>", ...]}'
    concepts, queries, captions = {}, {}, {}
    for folder in folders:
        name = folder.name
        # data_utils.py: the augmented captions when they exist
        captions_path = folder / "captions_augmented.json"
        if not captions_path.exists():
            captions_path = folder / "captions.json"
        image_captions = _read_json(
            captions_path,
            f"the captions of MyVLM concept {name!r} (captions.json or captions_augmented.json)",
            shape=dict,
            expected=expected,
        )
        for image_name, texts in image_captions.items():
            if not isinstance(texts, list) or not texts or not all(isinstance(text, str) for text in texts):
                raise ValueError(
                    f"{captions_path}, {image_name}: expected a non-empty list of captions, found {texts!r}."
                )
        images = [folder / image for image in image_captions]
        _check_images_exist(images, f"photos of MyVLM concept {name!r} named in {captions_path.name}")
        if len(images) <= num_references:
            raise ValueError(
                f"MyVLM concept {name!r} has {len(images)} photos: with num_references={num_references} none is "
                "left to query. Lower num_references or add photos."
            )
        chosen = set(generator.sample(range(len(images)), num_references))
        concepts[name] = _concept(name, [images[i] for i in sorted(chosen)])
        queries[name] = [images[i] for i in range(len(images)) if i not in chosen]
        name_pattern = re.compile(rf"(?<!\w){re.escape(name)}(?!\w)", flags=re.IGNORECASE)
        captions[name] = {
            image: name_pattern.sub(concept_label(name), image_captions[image.name][0]) for image in queries[name]
        }
    rows = []
    for name in concepts:
        for image in queries[name]:
            rows.append(
                _episode(
                    [concepts[name]],
                    image,
                    MYVLM_CAPTION_QUESTION.format(label=concept_label(name)),
                    captions[name][image],
                    "caption",
                    target=concept_label(name),
                    present=[concept_label(name)],
                )
            )
    for image_concept in concepts:
        for image in queries[image_concept]:
            for name in concepts:
                rows.append(
                    _episode(
                        [concepts[name]],
                        image,
                        RECOGNITION_QUESTION.format(label=concept_label(name)),
                        _yes_no(name == image_concept),
                        "recognition",
                        target=concept_label(name),
                        present=[concept_label(image_concept)],
                    )
                )
    return _to_dataset(rows)


# ----------------------------------------------------------------------------------------------- MC-LLaVA

_OPTION_LINE = re.compile(r"^\s*(?:\(([A-Z])\)|([A-Z])[.):])\s*(.+?)\s*$")
_ANSWER_LETTER = re.compile(r"^\s*(?:\(([A-Z])\)|([A-Z])(?:[.):]|$))")

# MC-LLaVA's question file of each task, in each character's test folder and each scenario's folder. Its
# README's tree swaps the comments of qa.json and vqa.json; its code (`llava/dataset.py`) reads qa.json as
# the text-only questions ([{question, answer}]) and vqa.json as the open questions about a photo.
MC_LLAVA_QUESTION_FILES = {"vqa": "choice.json", "attribute": "vqa.json", "text_qa": "qa.json"}


def _split_choice_question(question: str, answer: str, where: str) -> tuple[str, list[str], str]:
    """(question stem, option texts, correct option text) of a question with one option per line."""
    stem_lines, options = [], []
    for line in question.splitlines():
        match = _OPTION_LINE.match(line)
        if match and ord(match.group(1) or match.group(2)) - ord("A") == len(options):
            options.append(match.group(3))
        elif not options:
            stem_lines.append(line)
        # lines after the options (an instruction, say) are left out
    if len(options) < 2:
        raise ValueError(
            f"{where}: expected a multiple-choice question with one option per line ('A. text', 'A) text', "
            f"'(A) text' or 'A: text'), found {len(options)} option(s) in {question!r}."
        )
    letter = _ANSWER_LETTER.match(answer)
    if answer.strip() in options:
        correct = answer.strip()
    elif letter and ord(letter.group(1) or letter.group(2)) - ord("A") < len(options):
        correct = options[ord(letter.group(1) or letter.group(2)) - ord("A")]
    else:
        raise ValueError(
            f"{where}: the answer {answer!r} is neither an option letter nor one of the options {options}."
        )
    stem = "\n".join(stem_lines).strip()
    return stem, options, correct


def _qa_entries(value, where: str) -> list[dict]:
    # a character's files map a photo to one {Human, AI}; a scenario's to a list of them
    entries = value if isinstance(value, list) else [value]
    for entry in entries:
        _keys(entry, ("Human", "AI"), where, "{'Human': question, 'AI': answer} entries")
    return entries


def _mc_llava_references(group: Path, character: str, num_references: int | None) -> tuple[list[Path], list[Path]]:
    """A character's references (and their masks when every one has one).

    MC-LLaVA's code takes the photos `concept/train/train.json` lists for the character when that file
    exists (`{character: ["0.png", ...]}`); else every photo of `concept/train/<character>/`.
    """
    train_dir = group / "concept" / "train"
    listing = train_dir / "train.json"
    if listing.is_file():
        names = _read_json(
            listing, "MC-LLaVA's list of training photos", shape=dict, expected='{character: ["0.png", ...]}'
        )
        if not isinstance(names.get(character), list) or not names[character]:
            raise ValueError(
                f"{listing} lists no training photo for {character!r}: expected {{{character!r}: ['0.png', ...]}}."
            )
        references = [train_dir / character / name for name in names[character]]
        _check_images_exist(references, f"training photos of MC-LLaVA character {character!r} listed in {listing}")
    else:
        references = _images_in(train_dir / character, f"the training photos of MC-LLaVA character {character!r}")
    references = references[:num_references]
    masks = [path.with_name(f"{path.stem}_mask.png") for path in references]
    return references, masks if all(mask.is_file() for mask in masks) else []


def _join_labels(labels: list[str]) -> str:
    # "<a>", "<a> and <b>", "<a>, <b> and <c>"
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


def load_mc_llava(
    root: str | os.PathLike,
    num_references: int | None = None,
    recognition_templates: str | os.PathLike | None = None,
    tasks: Iterable[str] | None = None,
) -> Dataset:
    """Load MC-LLaVA's multi-concept test set as episodes.

    Expected layout: MC-LLaVA's released dataset, as its README draws it and its evaluation code
    (`llava/dataset.py`, `eval/eval.py`, `eval/gen_som.py`) reads it (the test files are not in its
    repository, so the question files' inner format is taken from that code):

    ```
    root/
    ├── scenarios.json                               ["Alex_Gloria_Marty", ...]: the scenarios to load
    ├── concept_type.json                            {character: group}  (MC-LLaVA's code reads it; not needed)
    └── <group>/                                     two_concept/ (2 characters), three_concept/ (3 or 4)
        ├── concept/train/<character>/<n>.png        training photos (<n>_mask.png: its mask)
        ├── concept/train/<character>/caption_llava.json   (LLaVA's descriptions, for a baseline: not read)
        ├── concept/train/train.json                 {character: ["0.png", ...]}  optional: the photos to use
        ├── concept/test/<character>/<n>.png         photos of the character alone
        ├── concept/test/<character>/choice.json     {image: {"Human": question with options, "AI": answer}}
        ├── concept/test/<character>/qa.json         [{"question": question with options, "answer": ...}]
        ├── concept/test/<character>/vqa.json        {image: {"Human": question, "AI": free answer}}
        └── multi/<scenario>/                        a scenario: its characters joined by "_"
            ├── <n>.png                              photos of several characters (_som/_bbox renderings not read)
            ├── position.json                        {image: {character: position or null}}
            ├── choice.json, vqa.json                {image: [{"Human": ..., "AI": ...}, ...]}
            ├── qa.json                              [{"question": ..., "answer": ...}]
            └── vqa_position.json                    (visual grounding: not read)
    ```

    Images named in the JSON files are found by their file name in the JSON's own folder (the release
    wrote them with its authors' paths). Multiple-choice questions carry their options one per line,
    lettered in order ("A. text", "A) text", "(A) text" or "A: text"), and the answer is the option's text
    or its letter ("A", "A.", "(A)", "A) text"); the lines before the options become the question, the
    option texts `options`, the correct option's text the answer (lines after the options are left out).

    Every episode of a scenario holds all its characters (`<name>`), each with its training photos as
    references (the first `num_references`; None: all) and their masks when every reference has one.
    The tasks, per scenario (`tasks` picks; the default is `MC_LLAVA_TASKS`, those the paper reports):

    - recognition (`TestDatasetForMultiRec`): each photo of a character alone asked about each character
      ("Can you see <c> in this photo? Answer the question using a single word Yes or No."), each scenario
      photo asked about each character, and each scenario photo asked about all of them at once ("Can you
      see <a> and <b> in this photo? ..."). "Yes" when they are in it: a character's own photos, and for
      scenario photos the characters `position.json` places there (MC-LLaVA's code answers "Yes" for every
      scenario photo; the two agree wherever `position.json` places every character). With
      `recognition_templates` (MC-LLaVA's training template file, `recognize_positive_template.json`) the
      template questions word the episodes in turn, followed by the instruction.
    - vqa: `choice.json` (multiple choice about a photo, MC-LLaVA's "choice" accuracy);
    - text_qa: `qa.json` (multiple choice without image, its "text" accuracy);
    - caption: each photo, MC-LLaVA's caption request naming the scenario's characters; the answer is
      empty and captions are scored by recall of `present`, as MC-LLaVA does;
    - attribute (on request): `vqa.json`, open questions about a photo. MC-LLaVA scores them by a character
      BLEU, which the harness does not compute (it scores exact match), so they are not loaded by default;
    - presence (on request, the project's own): "Which of <a>, <b> are in this photo? ...".

    `present` lists the characters in the photo; photos with more than one are tagged `multi_concept`.
    `target` is the character a question is about, or "" when it is about several.

    Args:
        root: the dataset folder that holds `scenarios.json`.
        num_references: how many training photos of each character become its references (None: all).
        recognition_templates: a MC-LLaVA recognition template file (`[{"Question": ..., "Answer": ...}]`,
            the concept written `<sks>`) whose questions word the recognition episodes.
        tasks: the tasks to load, among `MC_LLAVA_TASKS` and `MC_LLAVA_EXTRA_TASKS`.

    Raises:
        FileNotFoundError: `scenarios.json`, a scenario or character folder, `position.json`, the question
            file of a requested task or a photo named in a JSON file is missing.
        ValueError: a JSON file of another shape, a photo `position.json` does not place, a malformed
            multiple-choice question, an unknown task or an invalid `num_references`.

    Example:

    ```python
    >>> episodes = load_mc_llava("/data/mc-llava", num_references=5)
    >>> episodes.filter(lambda tags: "multi_concept" in tags, input_columns="tags").num_rows > 0
    True
    ```
    """
    _check_num_references(num_references)
    tasks = _check_tasks(tasks, MC_LLAVA_TASKS, MC_LLAVA_EXTRA_TASKS, "MC-LLaVA")
    root = Path(root).resolve()
    scenarios = _read_json(
        root / "scenarios.json",
        "MC-LLaVA's scenario list `scenarios.json`",
        shape=list,
        expected='a list of scenario names, ["Alex_Gloria_Marty", ...]',
    )
    templates = None
    if recognition_templates is not None:
        expected = '[{"Question": ..., "Answer": ...}]'
        entries = _read_json(
            Path(recognition_templates), "the MC-LLaVA recognition template file", shape=list, expected=expected
        )
        for index, entry in enumerate(entries):
            _keys(entry, ("Question",), f"{recognition_templates}, entry {index}", expected)
        templates = [entry["Question"] for entry in entries]
        if not templates:
            raise ValueError(f"The recognition template file {recognition_templates} holds no question.")
    groups = sorted(path for path in root.iterdir() if (path / "multi").is_dir())
    rows = []
    recognition_count = 0

    def recognition_question(labels: str) -> str:
        nonlocal recognition_count
        if templates is None:
            question = MC_LLAVA_RECOGNITION_QUESTION.format(label=labels)
        else:
            template = templates[recognition_count % len(templates)]
            question = f"{template.replace('<sks>', labels)} {MC_LLAVA_RECOGNITION_INSTRUCTION}"
        recognition_count += 1
        return question

    for scenario in scenarios:
        group = next((path for path in groups if (path / "multi" / str(scenario)).is_dir()), None)
        if group is None:
            raise FileNotFoundError(
                f"Expected the MC-LLaVA scenario folder <group>/multi/{scenario} under {root} "
                f"(groups found: {[path.name for path in groups]}), but there is none."
            )
        characters = scenario.split("_")
        labels = [concept_label(character) for character in characters]
        concepts = [
            _concept(character, *_mc_llava_references(group, character, num_references)) for character in characters
        ]

        # the photos and who is in them: each character's own photos, then the scenario's photos
        photos: dict[Path, list[str]] = {}  # image -> labels of the characters in it
        for character in characters:
            folder = group / "concept" / "test" / character
            for image in _images_in(folder, f"the test photos of MC-LLaVA character {character!r}"):
                photos[image] = [concept_label(character)]
        scenario_folder = group / "multi" / scenario
        scenario_photos = _images_in(scenario_folder, f"the photos of MC-LLaVA scenario {scenario!r}")
        positions_path = scenario_folder / "position.json"
        positions = _read_json(
            positions_path,
            f"the positions file of MC-LLaVA scenario {scenario!r}",
            shape=dict,
            expected="{image: {character: position or null}}",
        )
        placed = {}
        for image_key, position in positions.items():
            image_name = Path(image_key).name
            if not isinstance(position, dict):
                raise ValueError(
                    f"{positions_path}, {image_key}: expected {{character: position or null}}, found {position!r}."
                )
            unknown = sorted(set(position) - set(characters))
            if unknown:
                raise ValueError(
                    f"{positions_path} places {unknown} in {image_name}, but the scenario's characters are "
                    f"{characters}."
                )
            placed[image_name] = [concept_label(c) for c in characters if position.get(c) is not None]
        _check_images_exist(
            (scenario_folder / name for name in placed), f"photos of MC-LLaVA scenario {scenario!r} in position.json"
        )
        unplaced = [image.name for image in scenario_photos if image.name not in placed]
        if unplaced:
            raise ValueError(
                f"{positions_path} has no entry for {unplaced}: expected {{image: {{character: position or null}}}} "
                "for every photo of the scenario."
            )
        for image in scenario_photos:
            photos[image] = placed[image.name]

        def tags_of(present: list[str]) -> list[str]:
            return ["multi_concept"] if len(present) > 1 else []

        for image, present in photos.items():
            if "recognition" in tasks:
                for label in labels:
                    rows.append(
                        _episode(
                            concepts,
                            image,
                            recognition_question(label),
                            _yes_no(label in present),
                            "recognition",
                            target=label,
                            present=present,
                            tags=tags_of(present),
                        )
                    )
            if "presence" in tasks:
                rows.append(
                    _episode(
                        concepts,
                        image,
                        PRESENCE_QUESTION.format(labels=", ".join(labels)),
                        ", ".join(present) or "None",
                        "presence",
                        present=present,
                        tags=tags_of(present),
                    )
                )
            if "caption" in tasks:
                rows.append(
                    _episode(
                        concepts,
                        image,
                        MC_LLAVA_CAPTION_QUESTION.format(labels=", ".join(labels)),
                        "",
                        "caption",
                        present=present,
                        tags=tags_of(present),
                    )
                )
        if "recognition" in tasks:
            # MC-LLaVA's "mi_mq" questions: every character at once, about each scenario photo
            for image in scenario_photos:
                present = photos[image]
                rows.append(
                    _episode(
                        concepts,
                        image,
                        recognition_question(_join_labels(labels)),
                        _yes_no(set(labels) <= set(present)),
                        "recognition",
                        present=present,
                        tags=tags_of(present),
                    )
                )

        # the question files of each character, then of the scenario
        folders = [(group / "concept" / "test" / character, concept_label(character)) for character in characters]
        folders.append((scenario_folder, ""))
        for folder, target in folders:
            for task in ("vqa", "attribute", "text_qa"):
                if task not in tasks:
                    continue
                path = _require(
                    folder / MC_LLAVA_QUESTION_FILES[task],
                    f"MC-LLaVA's {MC_LLAVA_QUESTION_FILES[task]} (the {task} questions)",
                    f"Leave {task!r} out of tasks to load without it.",
                )
                if task == "text_qa":
                    expected = '[{"question": question with options, "answer": ...}]'
                    entries = _read_json(path, "MC-LLaVA's qa.json", shape=list, expected=expected)
                    for index, entry in enumerate(entries):
                        _keys(entry, ("question", "answer"), f"{path}, question {index}", expected)
                        question, options, answer = _split_choice_question(
                            entry["question"], entry["answer"], f"{path}, question {index}"
                        )
                        rows.append(_episode(concepts, None, question, answer, task, target=target, options=options))
                    continue
                expected = '{image: {"Human": ..., "AI": ...}} (a list of them per image in a scenario)'
                content = _read_json(path, f"MC-LLaVA's {path.name}", shape=dict, expected=expected)
                for image_key, value in content.items():
                    image = folder / Path(image_key).name
                    if image not in photos:
                        raise FileNotFoundError(
                            f"{path} asks about {Path(image_key).name}, but {folder} has no such photo"
                            + ("" if target else " in position.json")
                            + "."
                        )
                    present = photos[image]
                    for index, entry in enumerate(_qa_entries(value, f"{path}, {image_key}")):
                        if task == "vqa":
                            question, options, answer = _split_choice_question(
                                entry["Human"], entry["AI"], f"{path}, {image_key}, question {index}"
                            )
                        else:
                            question, options, answer = entry["Human"], [], entry["AI"]
                        rows.append(
                            _episode(
                                concepts,
                                image,
                                question,
                                answer,
                                task,
                                target=target,
                                options=options,
                                present=present,
                                tags=tags_of(present),
                            )
                        )
    return _to_dataset(rows)


# ---------------------------------------------------------------------------------------------------- RAP

RAP_DATABASE_SHAPE = (
    '{"concept_dict": {"<bo>": {"name", "image", "info", "category"}}, "path_to_concept": {image: "<bo>"}}'
)


def _rap_database(root: Path, database: str | os.PathLike | None) -> Path:
    """The `database.json` of RAP's `--database` folder: `database` (relative to `root`), else the only one found."""
    if database is not None:
        folder = root / Path(database)
        return _require(folder / "database.json", "RAP's database file `database.json`")
    folders = [root, *sorted(root.iterdir())]
    found = [folder / "database.json" for folder in folders if (folder / "database.json").is_file()]
    if len(found) != 1:
        raise (FileNotFoundError if not found else ValueError)(
            f"Expected one RAP database (a folder holding database.json, like RAP's example_database/) in {root} "
            f"or directly under it, found {len(found)}{': ' + ', '.join(map(str, found)) if found else ''}. "
            "Pass database='<folder>' to choose."
        )
    return found[0]


def _rap_path(root: Path, path: str) -> Path:
    # RAP's scripts run from its repository root: relative paths are read from there
    return Path(path) if Path(path).is_absolute() else Path(os.path.normpath(root / path))


def load_rap(
    root: str | os.PathLike,
    split_files: Mapping[str, str | os.PathLike | None] | None = None,
    database: str | os.PathLike | None = None,
) -> Dataset:
    """Load RAP's evaluation as episodes: recognition and personalized captions, on RAP's concept database.

    Expected layout: RAP's working directory (its repository root, where `eval/recognition.py` and
    `eval/caption.py` run), with the database and the test data its README points to:

    ```
    root/
    ├── example_database/database.json      {"concept_dict": {"<bo>": {name, image, info, category}},
    │                                         "path_to_concept": {"example_database/bo.png": "<bo>"}}
    ├── example_database/bo.png ...         the concepts' photos (paths in database.json read from root)
    ├── eval/recognition_test.json          [{image, question, concept, type, correct_answer}]  (RAP's repository)
    ├── eval/caption.json                   {image: [concept, ...]}: the --eval-file of eval/caption.py
    └── yollava-data/test/..., ...          the photos the two files name (Yo'LLaVA's, MyVLM's, RAP's own)
    ```

    The database folder is `database` (RAP's `--database`), or the only folder of `root` (or `root`
    itself) that holds a `database.json`. Each concept of `concept_dict` becomes `<name>`, its references
    the photos `path_to_concept` maps to it (its `image` first), its description the `info` sentence (what
    the harness's text-description baseline reads). RAP's evaluation uses its full database (a Google Drive
    link in its README), not `example_database/`'s 10 concepts: every concept a test file names must be in
    the database.

    - recognition: one episode per row of the recognition file, asked with the row's own question (RAP's
      "Is <bo> in this image? Answer with a single word or phrase.", its `<image>` token removed), the
      concept's database entry as the episode's concept; "Yes"/"No" from `correct_answer`, the file's 333
      repeated rows dropped as for Yo'LLaVA: 333 positives and 12,987 negatives, scored by weighted accuracy.
      `present` is the concepts the file answers yes for about that photo.
    - caption: one episode per photo of the caption file, holding the concepts it lists (`bo` or `<bo>`).
      RAP asks "Give a caption of the image." after the concepts its retriever puts in the prompt; here the
      listed concepts are named in the question ("Give a caption of the image of <bo> and <mam>.", the
      retrieval assumed right), the answer is empty and captions are scored by recall of `present` (RAP
      also reports precision and F1, which the harness does not compute). Photos of several concepts are
      tagged `multi_concept`. RAP publishes this file's format but not its name: `eval/caption.json` is
      this loader's default.

    Args:
        root: RAP's working directory: relative paths in the files are read from it.
        split_files: which tasks to load and from which file, `{task: path}` with tasks among `RAP_FILES`'
            keys; relative paths are read from `root`, None means the default. Defaults to both tasks.
        database: the database folder, relative to `root` (default: the only one found).

    Raises:
        FileNotFoundError: the database, a test file or a photo is missing.
        ValueError: a file of another shape, a concept the database does not hold, several databases
            found, or an unknown task.

    Example:

    ```python
    >>> episodes = load_rap("/data/RAP-MLLM", database="full_database")
    >>> sorted(set(episodes["task"]))
    ['caption', 'recognition']
    ```
    """
    root = Path(root).resolve()
    requested = dict.fromkeys(RAP_FILES) if split_files is None else dict(split_files)
    unknown = sorted(set(requested) - set(RAP_FILES))
    if unknown or not requested:
        raise ValueError(f"Unknown RAP task(s) {unknown} in split_files: the tasks are {sorted(RAP_FILES)}.")
    paths = {task: root / Path(path if path is not None else RAP_FILES[task]) for task, path in requested.items()}

    database_path = _rap_database(root, database)
    content = _read_json(database_path, "RAP's database", shape=dict, expected=RAP_DATABASE_SHAPE)
    _keys(content, ("concept_dict", "path_to_concept"), str(database_path), RAP_DATABASE_SHAPE)
    references: dict[str, list[str]] = {}
    for path, key in content["path_to_concept"].items():
        if key not in content["concept_dict"]:
            raise ValueError(
                f"{database_path}: path_to_concept maps {path} to {key!r}, which concept_dict does not hold."
            )
        references.setdefault(key, []).append(path)
    concepts: dict[str, dict] = {}  # label -> concept
    for key, entry in content["concept_dict"].items():
        _keys(entry, ("name", "image", "info"), f"{database_path}, concept_dict, {key}", RAP_DATABASE_SHAPE)
        photos = [entry["image"]] + [path for path in references.get(key, []) if path != entry["image"]]
        photos = [_rap_path(root, path) for path in photos]
        _check_images_exist(photos, f"photos of RAP concept {key!r} named in {database_path} (read from {root})")
        concepts[concept_label(entry["name"])] = _concept(entry["name"], photos, description=entry["info"] or None)

    def concept(name: str, where: Path) -> dict:
        if concept_label(name) not in concepts:
            raise ValueError(
                f"{where} names {concept_label(name)}, which {database_path} does not hold (it holds "
                f"{len(concepts)} concepts). RAP evaluates with its full database; pass database='<folder>'."
            )
        return concepts[concept_label(name)]

    hint = "Pass split_files={task: path} to read it from elsewhere, or leave that task out."
    rows = []
    query_images = set()
    if "recognition" in requested:
        path = paths["recognition"]
        entries = _recognition_file_rows(path, "RAP's recognition file", hint)
        present = _present_by_image(entries)
        for (image_key, name), entry in entries.items():
            image = _rap_path(root, image_key)
            query_images.add(image)
            rows.append(
                _episode(
                    [concept(name, path)],
                    image,
                    re.sub(r"<image>\s*", "", entry["question"]).strip(),  # RAP's prompt adds its own image
                    _yes_no(entry["correct_answer"]),
                    "recognition",
                    target=concept_label(name),
                    present=present[image_key],
                )
            )
    if "caption" in requested:
        path = paths["caption"]
        expected = "{image: [concept, ...]} (the --eval-file of RAP's eval/caption.py)"
        hint_caption = (
            "RAP publishes this file's format, not its name: place it there or pass split_files={'caption': path}, "
            "or leave captions out with split_files={'recognition': None}."
        )
        content = _read_json(path, "RAP's caption file", hint_caption, shape=dict, expected=expected)
        for image_key, names in content.items():
            if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
                raise ValueError(f"{path}, {image_key}: expected a non-empty list of concept names, found {names!r}.")
            image = _rap_path(root, image_key)
            query_images.add(image)
            labels = [concept_label(name) for name in names]
            rows.append(
                _episode(
                    [concept(name, path) for name in names],
                    image,
                    RAP_CAPTION_QUESTION.format(labels=_join_labels(labels)),
                    "",
                    "caption",
                    target=labels[0] if len(labels) == 1 else "",
                    present=labels,
                    tags=["multi_concept"] if len(labels) > 1 else [],
                )
            )
    _check_images_exist(query_images, "RAP query photos named in the test files")
    return _to_dataset(rows)
