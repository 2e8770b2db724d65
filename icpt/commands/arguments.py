"""What the parsers of `icpt`'s commands share: `HfArgumentParser` dataclasses, one-line usage errors, and the options
that choose a model."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from icpt.inference import DEFAULT_MODEL

EXIT_ERROR = 2
# metadata that makes a field be added as it says, rather than by transformers' rule (which makes every field one
# `--option` of its annotated type; `nargs` and `const` alone it honours, and TrainingArguments uses them)
ARGPARSE_KEYWORDS = {"positional", "action", "type"}


class OneLineErrors:
    """Mixin for an `argparse.ArgumentParser`: a usage error is one line that points to `--help`."""

    def error(self, message):
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


class ArgumentParser(OneLineErrors, HfArgumentParser):
    """
    `HfArgumentParser` with one-line usage errors, for dataclasses whose fields carry `help` metadata.

    A field whose metadata says how argparse takes it is added as it says: `positional=True` makes it an argument by
    position, and `action` or `type` replace what its annotation would give (`action="append"`: a repeatable option;
    `type=int, nargs="*"`: an option that may come without values, which a `list` annotation would not allow).

    Example:

    ```python
    >>> @dataclass
    ... class Arguments:
    ...     image: str = field(metadata={"positional": True, "help": "the photo"})
    ...     max_new_tokens: int = field(default=48, metadata={"help": "longest answer"})
    >>> ArgumentParser(Arguments, prog="ask").parse(["photo.jpg", "--max-new-tokens", "8"])
    (Arguments(image='photo.jpg', max_new_tokens=8),)
    ```
    """

    def __init__(self, dataclass_types, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(dataclass_types, **kwargs)

    @staticmethod
    def _parse_dataclass_field(parser, field):
        metadata = dict(field.metadata)
        if not ARGPARSE_KEYWORDS & metadata.keys():
            return HfArgumentParser._parse_dataclass_field(parser, field)
        if metadata.pop("positional", False):
            names = [field.name]
        else:
            names = list(dict.fromkeys([f"--{field.name}", f"--{field.name.replace('_', '-')}"]))
            names += metadata.pop("aliases", [])
        if field.default is not dataclasses.MISSING:
            metadata["default"] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            metadata["default"] = field.default_factory()
        parser.add_argument(*names, **metadata)

    def parse(self, argv=None) -> tuple:
        """The dataclasses of `argv`; an argument no dataclass takes is a usage error."""
        *parsed, rest = self.parse_args_into_dataclasses(args=argv, return_remaining_strings=True,
                                                         look_for_args_file=False)
        if rest:
            self.error(f"unrecognized arguments: {' '.join(rest)}")
        return tuple(parsed)


@dataclass
class ModelArguments:
    """Which ICPT model a command loads (`icpt.inference.load_model`)."""

    model: str = field(default=str(DEFAULT_MODEL), metadata={
        "metavar": "PATH_OR_REPO", "help": "ICPT checkpoint: a folder or a Hub repo id (default: the embedded default)."})
    backbone: str | None = field(default=None, metadata={
        "metavar": "PATH_OR_REPO", "help": "use this backbone instead of the one the checkpoint names (e.g. a local copy)."})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1, ... (default: where the model loads)."})
