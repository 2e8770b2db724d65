"""The `icpt` command line: from a folder of your photos to personalized answers.

    icpt encode my_photos --output my_concepts.safetensors      # my_photos/bo/*.jpg, my_photos/kiki/*.jpg
    icpt ask photo.jpg "Is <bo> in this photo?" --bank my_concepts.safetensors
    icpt chat --image photo.jpg --bank my_concepts.safetensors   # questions from stdin; /image PATH, /quit
    icpt episodes --photos my_photos --output my_episodes       # training episodes from your photos
    icpt train --backbone PATH_OR_REPO --output_dir outputs/projector --max_steps 600
    icpt eval ...                                                # the evaluation harness
    icpt demo                                                    # the embedded default on three new concepts
    icpt serve                                                   # the web app, http://127.0.0.1:7860

Each command is a module of `icpt.commands` with a `main(argv)`; `python -m icpt COMMAND ...` is the same as
`icpt COMMAND ...`. `encode`, `ask`, `chat`, `train` and `serve` take `--model PATH_OR_REPO`, an ICPT checkpoint
(a folder written by `save_pretrained` or a Hub repository); by default the embedded one. Errors are printed as one
line that says what to fix, with exit status 2.

Example:

```python
>>> from icpt.commands.cli import main
>>> main(["encode", "my_photos", "--output", "my_concepts.safetensors", "--model", "path/to/icpt"])  # doctest: +SKIP
0
```
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .arguments import EXIT_ERROR, OneLineErrors

# command -> (its module, what `icpt --help` says of it)
COMMANDS = {
    "encode": ("icpt.commands.encode", "encode a folder of photos per concept into a concept bank"),
    "ask": ("icpt.commands.ask", "answer one question about a photo"),
    "chat": ("icpt.commands.chat", "ask questions interactively"),
    "episodes": ("icpt.commands.episodes", "build training episodes from your photos or a datasets dataset"),
    "train": ("icpt.commands.train", "train a projector (transformers.Trainer; `icpt train --help` lists every option)"),
    "eval": ("icpt.commands.eval", "run the evaluation harness"),
    "demo": ("icpt.commands.demo", "personalize the embedded default with three new concepts"),
    "serve": ("icpt.commands.serve", "start the web app (Gradio): add concepts from photos, ask, save banks"),
}


class OneLineParser(OneLineErrors, argparse.ArgumentParser):
    """The parser of `icpt` itself: which command."""


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="icpt", description="Personalize a frozen vision-language model with a few photos per concept.",
                           epilog="`icpt COMMAND --help` lists the options of a command.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_text) in COMMANDS.items():
        commands.add_parser(name, help=help_text, add_help=False)
    return parser


def one_line(message) -> str:
    return " ".join(str(message).split())


def main(argv: list[str] | None = None) -> int:
    """Run `icpt` with `argv` (default: `sys.argv[1:]`); returns the exit status (0 success, 2 an error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    name = argv[0] if argv else None
    try:
        if name not in COMMANDS:
            build_parser().parse_args(argv)  # --help, or a usage error
            return EXIT_ERROR
        # a command's module is loaded when it runs: `icpt ask` need not load the Trainer or the web app
        result = importlib.import_module(COMMANDS[name][0]).main(argv[1:])
        return result if isinstance(result, int) else 0
    except SystemExit as done:  # --help and usage errors end this way
        return done.code if isinstance(done.code, int) else (0 if done.code is None else EXIT_ERROR)
    except KeyboardInterrupt:
        return 130
    except (ValueError, OSError) as error:
        # ValueError covers ICPTInputError; OSError covers FileNotFoundError, transformers' "not a valid
        # model identifier" and the Hub client's download errors
        print(one_line(f"icpt {name or ''}: error: {error}"), file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
