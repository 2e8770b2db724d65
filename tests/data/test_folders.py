"""A folder of photos per concept (icpt/data/folders.py): the labels it gives, what it skips, what it refuses."""

import pytest

from helpers.images import random_image
from icpt.data.folders import concept_folders, image_suffixes


def photo(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    random_image(0, size=(8, 8)).save(path)


def test_one_label_per_sub_folder_with_or_without_brackets(tmp_path):
    for name in ("zed/1.png", "zed/0.JPG", "<bo>/a.webp", "kiki/x.jpeg"):
        photo(tmp_path / name)
    (tmp_path / "kiki" / "notes.txt").write_text("not a photo")
    (tmp_path / "kiki" / ".hidden.png").write_bytes(b"")
    (tmp_path / ".cache" / "1.png").parent.mkdir()
    photo(tmp_path / ".cache" / "1.png")
    (tmp_path / "loose.png").write_bytes(b"")  # a file beside the sub-folders is no concept
    concepts = concept_folders(str(tmp_path))
    assert list(concepts) == ["<bo>", "<kiki>", "<zed>"]  # label order, brackets or not
    assert concepts["<zed>"] == [tmp_path / "zed" / "0.JPG", tmp_path / "zed" / "1.png"]
    assert concepts["<kiki>"] == [tmp_path / "kiki" / "x.jpeg"]


def test_pillow_s_suffixes():
    assert {".jpg", ".jpeg", ".png", ".webp"} <= image_suffixes()
    assert ".txt" not in image_suffixes()


def test_what_is_refused_says_how_to_fix_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"does not exist: give a folder with one sub-folder of photos"):
        concept_folders(tmp_path / "missing")
    with pytest.raises(ValueError, match="has no concept sub-folders"):
        concept_folders(tmp_path)
    photo(tmp_path / "bo" / "1.png")
    photo(tmp_path / "<bo>" / "2.png")
    with pytest.raises(ValueError, match=r"give the label <bo>: .*Merge their photos"):
        concept_folders(tmp_path)
    empty = tmp_path / "other"
    photo(empty / "x" / "1.png")
    (empty / "y").mkdir()
    (empty / "y" / "readme.md").write_text("no photos here")
    with pytest.raises(ValueError, match=r"has no photos .*add a few photos of <y>"):
        concept_folders(empty)
