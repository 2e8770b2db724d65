"""Atomic saves: write beside the destination under a temporary name, then rename into place.

A save that is killed half-way leaves only its temporary, never a half-written file under the real name; the
next save to the same place removes the temporaries of saves whose process is gone.
"""

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


def _process_is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError):
        return False
    return False


def remove_stale_temporaries(destination: Path) -> None:
    """Remove what interrupted saves to `destination` left: temporaries whose writing process has ended."""
    prefix = f".{destination.name}.tmp-"
    if not destination.parent.is_dir():
        return
    for leftover in destination.parent.iterdir():
        if not leftover.name.startswith(prefix):
            continue
        pid = leftover.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and _process_is_gone(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)


@contextmanager
def atomic_destination(destination, directory: bool = False):
    """
    Yield a temporary path beside `destination` to write to; on success it is renamed to `destination`.

    Args:
        destination: the file (or, with `directory=True`, the folder) to create or replace.
        directory: yield a new empty folder instead of a file path; if `destination` exists, each file
            written is renamed into it and the folder's other files stay.

    Example:

    ```python
    >>> with atomic_destination("bank.safetensors") as tmp:  # doctest: +SKIP
    ...     save_file(tensors, tmp)
    ```
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(destination)
    prefix = f".{destination.name}.tmp-{os.getpid()}-"
    if directory:
        tmp = Path(tempfile.mkdtemp(dir=destination.parent, prefix=prefix))
    else:
        fd, name = tempfile.mkstemp(dir=destination.parent, prefix=prefix)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if directory and destination.is_dir():
            # keep what else the folder holds (a Trainer's checkpoint-N subfolders): replace file by file
            for item in tmp.iterdir():
                os.replace(item, destination / item.name)
        else:
            os.replace(tmp, destination)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


__all__ = ["atomic_destination", "remove_stale_temporaries"]
