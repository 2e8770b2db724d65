"""Atomic saves (modeling_icpt/atomic_save.py): a save lands whole or not at all, and the next save clears what an
interrupted one left behind."""

import os
import subprocess
import sys

import pytest

from modeling_icpt.atomic_save import atomic_destination, remove_stale_temporaries


def test_a_finished_save_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "nested" / "bank.safetensors"
    with atomic_destination(path) as tmp:
        assert tmp.parent == path.parent and tmp.name.startswith(f".bank.safetensors.tmp-{os.getpid()}-")
        assert not path.exists()  # nothing under the real name while writing
        tmp.write_bytes(b"new")
    assert path.read_bytes() == b"new"
    assert [p.name for p in path.parent.iterdir()] == ["bank.safetensors"]


def test_an_interrupted_save_leaves_the_old_file_whole_and_no_partial_file(tmp_path):
    path = tmp_path / "bank.safetensors"
    path.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_destination(path) as tmp:
            tmp.write_bytes(b"half of the n")
            raise KeyboardInterrupt
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["bank.safetensors"]
    with pytest.raises(OSError):
        with atomic_destination(tmp_path / "new.safetensors") as tmp:
            tmp.write_bytes(b"x")
            raise OSError("disk full")
    assert [p.name for p in tmp_path.iterdir()] == ["bank.safetensors"]  # no new file, whole or partial


def test_a_folder_save_replaces_file_by_file_and_keeps_the_folder_s_other_files(tmp_path):
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    (folder / "config.json").write_text("old")
    (folder / "checkpoint-10").mkdir()  # e.g. a Trainer's checkpoint beside the model
    with atomic_destination(folder, directory=True) as tmp:
        assert tmp.is_dir() and not any(tmp.iterdir())
        (tmp / "config.json").write_text("new")
        (tmp / "model.safetensors").write_bytes(b"weights")
    assert (folder / "config.json").read_text() == "new" and (folder / "model.safetensors").read_bytes() == b"weights"
    assert (folder / "checkpoint-10").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    with atomic_destination(tmp_path / "fresh", directory=True) as tmp:
        (tmp / "a.txt").write_text("a")
    assert (tmp_path / "fresh" / "a.txt").read_text() == "a"


def test_only_the_temporaries_of_ended_processes_are_removed(tmp_path):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone_pid = int(ended.stdout)
    path = tmp_path / "bank.safetensors"
    stale_file = tmp_path / f".bank.safetensors.tmp-{gone_pid}-abc"
    stale_folder = tmp_path / f".bank.safetensors.tmp-{gone_pid}-def"
    running = tmp_path / f".bank.safetensors.tmp-{os.getpid()}-ghi"
    other = tmp_path / f".other.safetensors.tmp-{gone_pid}-abc"
    stale_file.write_bytes(b"half")
    stale_folder.mkdir()
    (stale_folder / "part").write_bytes(b"half")
    running.write_bytes(b"being written")
    other.write_bytes(b"another destination's")
    remove_stale_temporaries(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([running.name, other.name])
    remove_stale_temporaries(tmp_path / "missing" / "bank.safetensors")  # no folder: nothing to do, no error
