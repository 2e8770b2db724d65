"""A folder of photos per concept: `my_photos/bo/*.jpg` is the concept `<bo>`, as `icpt encode` and `icpt episodes`
read it."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image


def image_suffixes() -> set[str]:
    """File suffixes that Pillow can open (`.jpg`, `.png`, `.webp`, ...)."""
    return {suffix for suffix, name in Image.registered_extensions().items() if name in Image.OPEN}


def concept_folders(folder: str | os.PathLike) -> dict[str, list[Path]]:
    """
    `{label: [photo paths]}` from a folder with one sub-folder of photos per concept.

    A sub-folder's name is the label, with or without its angle brackets (`bo/` and `<bo>/` both give `<bo>`, so
    both in one folder is an error); hidden files and files that are not images by their suffix are skipped.

    Example:

    ```python
    >>> concept_folders("my_photos")  # my_photos/bo/1.jpg, my_photos/bo/2.jpg  # doctest: +SKIP
    {'<bo>': [PosixPath('my_photos/bo/1.jpg'), PosixPath('my_photos/bo/2.jpg')]}
    ```
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"The folder {folder} does not exist: give a folder with one sub-folder of photos per concept "
            f"(e.g. {folder}/bo/1.jpg)."
        )
    # in label order, whether or not a folder's name has the brackets
    subfolders = sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                        key=lambda p: p.name.strip("<>"))
    if not subfolders:
        raise ValueError(
            f"The folder {folder} has no concept sub-folders: put each concept's photos in a sub-folder named "
            f"after it (e.g. {folder}/bo/1.jpg for <bo>)."
        )
    suffixes = image_suffixes()
    concepts = {}
    for sub in subfolders:
        label = sub.name if sub.name.startswith("<") and sub.name.endswith(">") else f"<{sub.name}>"
        if label in concepts:
            raise ValueError(
                f"Two sub-folders of {folder} give the label {label}: {concepts[label][0].parent.name}/ and {sub.name}/. "
                "Merge their photos into one folder (or rename one)."
            )
        photos = sorted(p for p in sub.iterdir()
                        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes)
        if not photos:
            raise ValueError(f"The concept folder {sub} has no photos (.jpg, .png, ...): add a few photos of {label} or remove the folder.")
        concepts[label] = photos
    return concepts
