"""What the model and the processor both check: the label format, and the one exception for bad input.

`processing_icpt/input_checks.py` is a link to this file: remote code flattens both folders into one, where it
is one module, and the installed `processing_icpt` package imports this same module under its own name.
"""

import os
import re
from pathlib import Path

# a concept label is one word in angle brackets, like "<bo>" or "<my-mug>"
LABEL_PATTERN = re.compile(r"<[^<>\s]+>")


class ICPTInputError(ValueError):
    """
    Bad input to ICPT: an unknown or repeated label, a missing or unreadable image, a damaged concept bank,
    a bank made for another backbone, a checkpoint with missing keys, a prompt too long for the backbone, ...
    The message names the problem and how to fix it.

    Example:

    ```python
    >>> from modeling_icpt import ICPTInputError
    >>> issubclass(ICPTInputError, ValueError)
    True
    ```
    """


def looks_like_local_path(name) -> bool:
    """
    Whether `name` can only mean a local file or folder, never a Hub repo id (`"name"` or `"namespace/name"`):
    absolute, starting with `.` or `~`, with more than one `/`, a backslash, or a file suffix such as `.safetensors`.

    Example:

    ```python
    >>> looks_like_local_path("./my_concepts.safetensors"), looks_like_local_path("me/my-pets")
    (True, False)
    ```
    """
    name = os.fspath(name)
    return (Path(name).is_absolute() or name.startswith((".", "~")) or name.count("/") > 1 or "\\" in name
            or Path(name).suffix in (".safetensors", ".json", ".bin", ".pt"))


__all__ = ["ICPTInputError", "LABEL_PATTERN", "looks_like_local_path"]
