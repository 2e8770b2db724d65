"""Loaders that turn the public personalization benchmarks' layouts into the project's episode datasets.

Each loader reads a local copy of a benchmark (the images are not downloadable here, and the annotation
files of Yo'LLaVA are CC BY-NC 4.0: the project never ships them) and returns a `datasets.Dataset` with
exactly `icpt.episodes.EPISODE_FEATURES`, so the evaluation harness runs on it unchanged. Images are
referenced by absolute path and decoded lazily by `datasets.Image`, never loaded at load time.

- `load_yollava`: Yo'LLaVA (recognition, two-option visual QA, two-option text-only QA);
- `load_myvlm`: MyVLM (personalized captions, and recognition in the Yo'LLaVA protocol);
- `load_mc_llava`: MC-LLaVA (scenarios of 2-4 characters: recognition, presence, captions, multiple
  choice with and without an image, open questions; multi-character images tagged `multi_concept`).

Example:

```python
>>> from icpt.benchmarks import load_yollava
>>> episodes = load_yollava("/data/yollava")  # holds yollava-data/ and the three question files
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

from .episodes import EPISODE_FEATURES


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")

# The file of each Yo'LLaVA task, relative to the dataset root unless given as an absolute path.
YOLLAVA_FILES = {
    "recognition": "recognition_test.json",
    "vqa": "yollava-visual-qa.json",
    "text_qa": "yollava-text-only-qa.json",
}

# The recognition question of the Yo'LLaVA protocol (also used for MyVLM's concepts).
RECOGNITION_QUESTION = "Can you see {label} in this photo? Answer with a single word or phrase."
# MyVLM's captioning instruction for LLaVA (`VLM_TO_PROMPTS` in its code).
MYVLM_CAPTION_QUESTION = "Please caption this image of {label}."
# MC-LLaVA's test questions, as its evaluation code writes them.
MC_LLAVA_RECOGNITION_INSTRUCTION = "Answer the question using a single word Yes or No."
MC_LLAVA_RECOGNITION_QUESTION = "Can you see {label} in this photo? " + MC_LLAVA_RECOGNITION_INSTRUCTION
MC_LLAVA_CAPTION_QUESTION = (
    "Can you see {labels} in the image? Don't answer the question but remember it, and only response a "
    "detailed caption for the image. Your caption:"
)
# The project's own presence question (MC-LLaVA has none).
PRESENCE_QUESTION = "Which of {labels} are in this photo? Answer with their names, separated by commas, or None."


def concept_label(name: str) -> str:
    """The label a concept is written with in questions: `bo` -> `<bo>`."""
    return f"<{name}>"


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


def _read_json(path: Path, what: str, hint: str = ""):
    _require(path, what, hint)
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except json.JSONDecodeError as error:
        raise ValueError(f"{what} at {path} is not valid JSON: {error}") from error


def _check_images_exist(paths: Iterable[Path], what: str) -> None:
    missing = sorted({str(path) for path in paths if not path.is_file()})
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise FileNotFoundError(f"{len(missing)} {what} are missing: {shown}.")


def _check_num_references(num_references: int | None) -> None:
    if num_references is not None and (not isinstance(num_references, int) or num_references < 1):
        raise ValueError(
            f"num_references must be a positive integer or None (all references), got {num_references!r}."
        )


def _concept(name: str, references: list[Path], masks: list[Path] | None = None) -> dict:
    return {
        "name": concept_label(name),
        "references": [str(path) for path in references],
        "masks": [str(path) for path in masks or []],
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


# ----------------------------------------------------------------------------------------------- Yo'LLaVA


def _name_yollava_concept(text: str, name: str) -> str:
    # Yo'LLaVA writes the concept `<sks>` in visual questions and bare `sks` in text-only ones
    return re.sub(r"<sks>|\bsks\b", concept_label(name), text)


def load_yollava(
    root: str | os.PathLike,
    split_files: Mapping[str, str | os.PathLike] | None = None,
    num_references: int | None = None,
) -> Dataset:
    """Load Yo'LLaVA's test set as episodes: recognition, two-option visual QA and text-only QA.

    Expected layout (the dataset's own; the question files are those of Yo'LLaVA and RAP):

    ```
    root/
    ├── yollava-data/train/<concept>/<n>.png   the concept's reference photos
    ├── yollava-data/test/<concept>/<n>.png    the query photos
    ├── recognition_test.json       [{image, question, concept, type, correct_answer}, ...]
    ├── yollava-visual-qa.json      {concept: {"./yollava-data/test/<c>/<n>.png": {question, options, correct_answer}}}
    └── yollava-text-only-qa.json   {concept: {"0": {question, option, correct_answer}}}  (options: {A: text, B: text})
    ```

    Every episode holds one concept, `<concept>`, whose references are its training photos (the first
    `num_references` in natural order, all of them when None or when there are fewer).

    - recognition: one episode per row of the recognition file, asked in the Yo'LLaVA protocol's words
      ("Can you see <bo> in this photo? Answer with a single word or phrase."), answer "Yes"/"No" from
      `correct_answer`; `present` is the concept whose test folder holds the photo. **Quirk of the
      file:** 333 rows are typed `negative` yet labelled `true`; each repeats a positive row exactly
      (same image, same concept). Rows are keyed by (image, concept) and repeats are dropped, so every
      photo is asked about every concept once: 333 positives and 12,987 negatives (each concept's
      photos asked about the 39 others), as the protocol counts. `type` is never read; a repeat whose
      `correct_answer` disagrees with the first occurrence raises a `ValueError`.
    - vqa: one episode per question of the visual file; `sks` becomes the label, `options` are the texts
      of A and B in order, the answer is the correct option's text.
    - text_qa: the same for the text-only file (whose key is `option`, not `options`), without image.
      The file is kept as is: two questions of `tokyo-keyboard` offer "No" twice, and 390 of its 400
      answers are option A.

    Args:
        root: the folder that holds `yollava-data/` (and, by default, the question files).
        split_files: which tasks to load and from which file, `{task: path}` with tasks among
            `YOLLAVA_FILES`' keys; relative paths are read from `root`. Defaults to all three files in `root`.
        num_references: how many training photos of each concept become its references (None: all).

    Raises:
        FileNotFoundError: a folder, question file or photo the questions refer to is missing.
        ValueError: an unknown task in `split_files`, or an invalid `num_references`.

    Example:

    ```python
    >>> episodes = load_yollava("/data/yollava", split_files={"vqa": "yollava-visual-qa.json"}, num_references=3)
    >>> episodes[0]["question"]
    'What animal does <shiba-gray> resemble?'
    ```
    """
    _check_num_references(num_references)
    root = Path(root).resolve()
    files = dict(YOLLAVA_FILES if split_files is None else split_files)
    unknown = sorted(set(files) - set(YOLLAVA_FILES))
    if unknown:
        raise ValueError(f"Unknown Yo'LLaVA task(s) {unknown} in split_files: the tasks are {sorted(YOLLAVA_FILES)}.")
    data_dir = _require(root / "yollava-data", "Yo'LLaVA's image folder `yollava-data/`")
    hint = "Pass split_files={task: path} to read it from elsewhere, or leave that task out."
    paths = {task: root / Path(path) for task, path in files.items()}

    concepts: dict[str, dict] = {}

    def concept(name: str) -> dict:
        if name not in concepts:
            references = _images_in(data_dir / "train" / name, f"the training photos of Yo'LLaVA concept {name!r}")
            concepts[name] = _concept(name, references[:num_references])
        return concepts[name]

    rows = []
    query_images = set()
    if "recognition" in paths:
        answers: dict[tuple[str, str], bool] = {}
        for entry in _read_json(paths["recognition"], "Yo'LLaVA's recognition file", hint):
            key = (entry["image"], entry["concept"])
            answer = bool(entry["correct_answer"])
            if key in answers:
                if answers[key] != answer:
                    raise ValueError(
                        f"The recognition file asks about {entry['concept']!r} in {entry['image']} twice with "
                        "different answers: fix one of the two rows."
                    )
                continue
            answers[key] = answer
            image = root / entry["image"]
            query_images.add(image)
            rows.append(
                _episode(
                    [concept(entry["concept"])],
                    image,
                    RECOGNITION_QUESTION.format(label=concept_label(entry["concept"])),
                    _yes_no(answer),
                    "recognition",
                    target=concept_label(entry["concept"]),
                    present=[concept_label(image.parent.name)],
                )
            )
    for task, option_key, what in (("vqa", "options", "visual QA"), ("text_qa", "option", "text-only QA")):
        if task not in paths:
            continue
        for name, questions in _read_json(paths[task], f"Yo'LLaVA's {what} file", hint).items():
            for image_key, entry in questions.items():
                options = [entry[option_key][letter] for letter in sorted(entry[option_key])]
                image = Path(os.path.normpath(root / image_key)) if task == "vqa" else None
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
    """Load a MyVLM-style concept set as captioning and recognition episodes.

    Expected layout (MyVLM's `data_root`, as its README describes it):

    ```
    root/
    └── <concept>/
        ├── <image>.jpg ...
        └── captions.json    {"<image>.jpg": ["<caption>", ...], ...}  (or captions_augmented.json)
    ```

    The images of a concept are the keys of its captions file (`captions.json`, else
    `captions_augmented.json`). As in MyVLM, `num_references` of them, drawn at random with `seed`, are
    the concept's references and the rest are its queries (at least one must remain). The concept's
    name in the captions (the folder name, matched as a whole word, case-insensitively) becomes its
    label, `<concept>`.

    - caption: one episode per query photo, asked with MyVLM's instruction ("Please caption this image
      of <c>."); the answer is the photo's first caption; `present` is `[<c>]`, which caption recall
      is scored against.
    - recognition (Yo'LLaVA protocol): every query photo of every concept is asked about every
      concept, one concept per episode: "Yes" for its own, "No" for the others.

    Args:
        root: the folder that holds one sub-folder per concept.
        num_references: how many photos of each concept become its references.
        seed: the seed of the reference / query split.

    Raises:
        FileNotFoundError: no concept folder, a missing captions file or a missing photo.
        ValueError: a concept with no photo left to query, or an invalid `num_references`.

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
        raise FileNotFoundError(f"Expected one folder per concept in {root}, found none.")
    generator = random.Random(seed)
    concepts, queries, captions = {}, {}, {}
    for folder in folders:
        name = folder.name
        captions_path = folder / "captions.json"
        if not captions_path.exists() and (folder / "captions_augmented.json").exists():
            captions_path = folder / "captions_augmented.json"
        image_captions = _read_json(captions_path, f"the captions of MyVLM concept {name!r}")
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
    # single-character files map an image to one {Human, AI}; scenario files to a list of them
    entries = value if isinstance(value, list) else [value]
    for entry in entries:
        if not isinstance(entry, dict) or "Human" not in entry or "AI" not in entry:
            raise ValueError(f"{where}: expected {{'Human': question, 'AI': answer}} entries, found {entry!r}.")
    return entries


def load_mc_llava(
    root: str | os.PathLike,
    num_references: int | None = None,
    recognition_templates: str | os.PathLike | None = None,
) -> Dataset:
    """Load MC-LLaVA's multi-concept test set as episodes.

    MC-LLaVA's test files are not in its repository; this is the layout of its released dataset as its
    README and evaluation code (`llava/dataset.py`) read it, which this loader supports exactly:

    ```
    root/
    ├── scenarios.json                               ["Alex_Gloria_Marty", ...]: the scenarios to load
    └── <group>/                                     e.g. two_concept/, three_concept/
        ├── concept/train/<character>/<n>.png        references (<n>_mask.png: its mask, optional)
        ├── concept/test/<character>/<n>.png         photos of the character alone
        ├── concept/test/<character>/choice.json     {image: {"Human": question, "AI": answer}}  optional
        ├── concept/test/<character>/vqa.json        {image: {"Human": question, "AI": answer}}  optional
        ├── concept/test/<character>/qa.json         [{"question": ..., "answer": ...}]         optional
        └── multi/<scenario>/                        a scenario: its 2-4 characters joined by "_"
            ├── <n>.png                              photos of several characters
            ├── position.json                        {image: {character: position or null}}  required
            ├── choice.json, vqa.json                {image: [{"Human": ..., "AI": ...}, ...]}  optional
            └── qa.json                              [{"question": ..., "answer": ...}]         optional
    ```

    Images named in the JSON files are found by their file name in the JSON's own folder (the release
    wrote them with its authors' paths). Masks and `_som` / `_bbox` renderings are never taken as photos.
    Multiple-choice questions (`choice.json`, `qa.json`) carry their options one per line, lettered in
    order ("A. text", "A) text", "(A) text" or "A: text"), and the answer is the option's text or its
    letter ("A", "A.", "(A)", "A) text"); the lines before the options become the question, the option
    texts `options`, the correct option's text the answer (lines after the options are left out).

    Every episode of a scenario holds all its characters (`<name>`), each with its training photos as
    references (the first `num_references` in natural order; None: all) and their masks when every
    reference has one. Per scenario:

    - recognition: each photo (a character alone, or a scenario photo) asked about each character
      ("Can you see <c> in this photo? Answer the question using a single word Yes or No.", MC-LLaVA's
      test question; or, with `recognition_templates`, the questions of a MC-LLaVA template file such as
      `recognize_positive_template.json`, in turn, followed by that instruction); "Yes" when the
      character is in it (a character's own photos; `position.json` for scenario photos);
    - presence: each photo, "Which of <a>, <b> are in this photo? ...", answered with the names present;
    - caption: each photo, MC-LLaVA's caption request; the answer is empty and captions are scored by
      recall of `present`;
    - vqa: `choice.json` (multiple choice about the photo); text_qa: `qa.json` (multiple choice, no
      image); attribute: `vqa.json` (open question about the photo, free-text answer).

    `present` lists the characters in the photo; scenario photos with more than one are tagged
    `multi_concept`. `target` is the character a question is about, or "" when it is about several.

    Args:
        root: the dataset folder that holds `scenarios.json`.
        num_references: how many training photos of each character become its references (None: all).
        recognition_templates: a MC-LLaVA recognition template file (`[{"Question": ..., "Answer": ...}]`,
            the concept written `<sks>`) whose questions word the recognition episodes.

    Raises:
        FileNotFoundError: `scenarios.json`, a scenario or character folder, `position.json` or a photo
            named in a JSON file is missing.
        ValueError: a malformed multiple-choice question, or an invalid `num_references`.

    Example:

    ```python
    >>> episodes = load_mc_llava("/data/mc-llava", num_references=5)
    >>> episodes.filter(lambda tags: "multi_concept" in tags, input_columns="tags").num_rows > 0
    True
    ```
    """
    _check_num_references(num_references)
    root = Path(root).resolve()
    scenarios = _read_json(root / "scenarios.json", "MC-LLaVA's scenario list `scenarios.json`")
    templates = None
    if recognition_templates is not None:
        templates = [
            entry["Question"]
            for entry in _read_json(Path(recognition_templates), "the MC-LLaVA recognition template file")
        ]
        if not templates:
            raise ValueError(f"The recognition template file {recognition_templates} holds no question.")
    groups = sorted(path for path in root.iterdir() if (path / "multi").is_dir())
    rows = []
    recognition_count = 0

    def recognition_question(label: str) -> str:
        nonlocal recognition_count
        if templates is None:
            question = MC_LLAVA_RECOGNITION_QUESTION.format(label=label)
        else:
            template = templates[recognition_count % len(templates)]
            question = f"{template.replace('<sks>', label)} {MC_LLAVA_RECOGNITION_INSTRUCTION}"
        recognition_count += 1
        return question

    for scenario in scenarios:
        group = next((path for path in groups if (path / "multi" / scenario).is_dir()), None)
        if group is None:
            raise FileNotFoundError(
                f"Expected the MC-LLaVA scenario folder <group>/multi/{scenario} under {root} "
                f"(groups found: {[path.name for path in groups]}), but there is none."
            )
        characters = scenario.split("_")
        labels = [concept_label(character) for character in characters]
        concepts = []
        for character in characters:
            references = _images_in(
                group / "concept" / "train" / character, f"the training photos of MC-LLaVA character {character!r}"
            )[:num_references]
            masks = [path.with_name(f"{path.stem}_mask.png") for path in references]
            concepts.append(_concept(character, references, masks if all(mask.is_file() for mask in masks) else None))

        # the photos and who is in them: each character's own photos, then the scenario's photos
        photos: list[tuple[Path, list[str]]] = []  # (image, labels of the characters in it)
        for character in characters:
            folder = group / "concept" / "test" / character
            for image in _images_in(folder, f"the test photos of MC-LLaVA character {character!r}"):
                photos.append((image, [concept_label(character)]))
        scenario_folder = group / "multi" / scenario
        positions = _read_json(
            scenario_folder / "position.json", f"the positions file of MC-LLaVA scenario {scenario!r}"
        )
        for image_key, position in positions.items():
            image = scenario_folder / Path(image_key).name
            unknown = sorted(set(position) - set(characters))
            if unknown:
                raise ValueError(
                    f"{scenario_folder / 'position.json'} places {unknown} in {image.name}, but the scenario's "
                    f"characters are {characters}."
                )
            present = [concept_label(character) for character in characters if position.get(character) is not None]
            photos.append((image, present))
        _check_images_exist((image for image, _ in photos), f"photos of MC-LLaVA scenario {scenario!r}")

        for image, present in photos:
            tags = ["multi_concept"] if len(present) > 1 else []
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
                        tags=tags,
                    )
                )
            rows.append(
                _episode(
                    concepts,
                    image,
                    PRESENCE_QUESTION.format(labels=", ".join(labels)),
                    ", ".join(present) or "None",
                    "presence",
                    present=present,
                    tags=tags,
                )
            )
            rows.append(
                _episode(
                    concepts,
                    image,
                    MC_LLAVA_CAPTION_QUESTION.format(labels=", ".join(labels)),
                    "",
                    "caption",
                    present=present,
                    tags=tags,
                )
            )

        # the question files of each character, then of the scenario
        folders = [(group / "concept" / "test" / character, character) for character in characters]
        folders.append((scenario_folder, ""))
        present_in = dict(photos)
        for folder, character in folders:
            target = concept_label(character) if character else ""
            for task, file_name in (("vqa", "choice.json"), ("attribute", "vqa.json")):
                path = folder / file_name
                if not path.exists():
                    continue
                for image_key, value in _read_json(path, f"MC-LLaVA's {file_name}").items():
                    image = folder / Path(image_key).name
                    if image not in present_in:
                        raise FileNotFoundError(
                            f"{path} asks about {Path(image_key).name}, but {folder} has no such photo"
                            + ("" if character else " in position.json")
                            + "."
                        )
                    present = present_in[image]
                    tags = ["multi_concept"] if len(present) > 1 else []
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
                                tags=tags,
                            )
                        )
            path = folder / "qa.json"
            if path.exists():
                for index, entry in enumerate(_read_json(path, "MC-LLaVA's qa.json")):
                    question, options, answer = _split_choice_question(
                        entry["question"], entry["answer"], f"{path}, question {index}"
                    )
                    rows.append(_episode(concepts, None, question, answer, "text_qa", target=target, options=options))
    return _to_dataset(rows)
