"""The `icpt` command line: from a folder of your photos to personalized answers.

    icpt encode my_photos --output my_concepts.safetensors      # my_photos/bo/*.jpg, my_photos/kiki/*.jpg
    icpt ask photo.jpg "Is <bo> in this photo?" --bank my_concepts.safetensors
    icpt chat --image photo.jpg --bank my_concepts.safetensors   # questions from stdin; /image PATH, /quit
    icpt train --backbone PATH_OR_REPO --output_dir outputs/projector --max_steps 600
    icpt eval ...                                                # the evaluation harness (icpt.evaluation)
    icpt demo                                                    # the embedded default on three new concepts
    icpt serve                                                   # the web app, http://127.0.0.1:7860

`encode`, `ask`, `chat` and `train` take `--model PATH_OR_REPO`, an ICPT checkpoint (a folder written by
`save_pretrained` or a Hub repository); by default the embedded checkpoint `DEFAULT_MODEL`. Errors are printed
as one line that says what to fix, with exit status 2.

Example:

```python
>>> from icpt.cli import main
>>> main(["encode", "my_photos", "--output", "my_concepts.safetensors", "--model", "path/to/icpt"])  # doctest: +SKIP
0
```
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# the embedded default checkpoint, shipped inside the package (its config names the backbone beside it)
DEFAULT_MODEL = Path(__file__).resolve().parent / "default" / "projector"
# subcommands whose whole argument list goes to another module's `main(argv)`
DELEGATED = {
    "episodes": ("icpt.user_episodes", "build training episodes from your photos or a datasets dataset (`icpt episodes --help`)"),
    "train": ("icpt.train", "train a projector (transformers.Trainer; `icpt train --help` lists every option)"),
    "eval": ("icpt.evaluation", "run the evaluation harness (`icpt eval --help`)"),
    "demo": ("icpt.demo", "personalize the embedded default with three new concepts (`icpt demo --help`)"),
    "serve": ("icpt.serve", "start the web app (Gradio): add concepts from photos, ask, save banks (`icpt serve --help`)"),
}
EXIT_ERROR = 2
CHAT_HELP = "Type a question about the current photo; /image PATH switches the photo, /quit ends."


class OneLineErrors:
    """Mixin for an `argparse.ArgumentParser`: a usage error is one line that points to `--help`."""

    def error(self, message):
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


class OneLineParser(OneLineErrors, argparse.ArgumentParser):
    """The `ArgumentParser` of `icpt` and its subcommands."""


# ---------------------------------------------------------------- loading


def load_model(model: str | os.PathLike = DEFAULT_MODEL, backbone: str | os.PathLike | None = None, device=None):
    """
    An ICPT checkpoint (folder or Hub repo id) and its processor, ready for inference.

    Args:
        model: the checkpoint (default: the embedded one, `DEFAULT_MODEL`).
        backbone: a backbone folder or Hub id to use instead of the one the checkpoint's config names.
        device: where to put the model (`"cpu"`, `"cuda"`, ...); default: where it was loaded.

    Example:

    ```python
    >>> model, processor = load_model("me/icpt-qwen2.5-vl-3b", device="cuda")  # doctest: +SKIP
    ```
    """
    from transformers import AutoModelForImageTextToText

    from modeling_icpt import ICPTForConditionalGeneration
    from processing_icpt import ICPTProcessor

    path = Path(model)
    if path.resolve() == DEFAULT_MODEL and not DEFAULT_MODEL.is_dir():
        raise FileNotFoundError(
            f"No --model given and the embedded default checkpoint {DEFAULT_MODEL} is not installed: "
            "pass --model PATH_OR_REPO (an ICPT checkpoint folder or Hub repo id)."
        )
    if path.is_dir():
        config = path / "config.json"
        model_type = json.loads(config.read_text()).get("model_type") if config.is_file() else None
        if model_type != "icpt":
            raise ValueError(
                f"{path} is not an ICPT checkpoint ({'its config.json has model_type ' + repr(model_type) if config.is_file() else 'no config.json'}): "
                "give a folder written by ICPTForConditionalGeneration.save_pretrained (e.g. by `icpt train`)."
            )
    elif path.is_absolute() or str(model).startswith((".", "~")) or str(model).count("/") > 1:
        # not a Hub repo id ("name" or "namespace/name"): a local path that is not there
        raise FileNotFoundError(f"No ICPT checkpoint at {model}: check the path (or give a Hub repo id such as me/icpt-model).")
    vlm = AutoModelForImageTextToText.from_pretrained(str(backbone)) if backbone is not None else None
    icpt = ICPTForConditionalGeneration.from_pretrained(str(model), backbone=vlm).eval()
    if device is not None:
        icpt.to(device)
    return icpt, ICPTProcessor.from_pretrained(str(model))


def image_suffixes() -> set[str]:
    """File suffixes that Pillow can open (`.jpg`, `.png`, `.webp`, ...)."""
    from PIL import Image

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


# ---------------------------------------------------------------- the work


def encode(model, processor, concepts: dict[str, list], progress: bool = True):
    """
    A `ConceptBank` of `concepts` (`{label: [photos]}`), encoded in batches (`ConceptBank.encode`), with a progress bar.

    Example:

    ```python
    >>> bank = encode(model, processor, concept_folders("my_photos"))  # doctest: +SKIP
    >>> bank.lengths  # doctest: +SKIP
    {'<bo>': 5, '<kiki>': 3}
    ```
    """
    limit = model.config.max_references
    for label, photos in concepts.items():
        if len(photos) > limit:
            raise ValueError(f"{label} has {len(photos)} photos but this projector takes at most {limit} per concept: keep the {limit} clearest.")
    from modeling_icpt import ConceptBank

    return ConceptBank.encode(model, processor, {label: list(photos) for label, photos in concepts.items()},
                              progress=progress)


def answer(model, processor, question: str, image=None, bank=None, max_new_tokens: int = 48, retrieved=None) -> str:
    """
    The model's greedy answer to `question` about `image` (a path or PIL image; `None` for a text-only question).
    `retrieved`: labels of `bank` that enter the prompt although the question does not name them.

    Example:

    ```python
    >>> answer(model, processor, "Is <bo> in this photo?", "photo.jpg", bank)  # doctest: +SKIP
    'Yes'
    ```
    """
    content = ([{"type": "image"}] if image is not None else []) + [{"type": "text", "text": question}]
    inputs = processor(messages=[{"role": "user", "content": content}],
                       images=[[image]] if image is not None else None, concepts=bank,
                       retrieved=[list(retrieved)] if retrieved else None).to(model.device)
    out = model.generate(**inputs, concepts=bank, max_new_tokens=max_new_tokens, do_sample=False)
    return processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def load_bank(path):
    """The `ConceptBank` at a file, a folder or a Hub repo id; `None` when `path` is `None`."""
    if path is None:
        return None
    from modeling_icpt import ConceptBank

    return ConceptBank.from_pretrained(path)


# ---------------------------------------------------------------- subcommands


def run_encode(args) -> int:
    folders = concept_folders(args.folder)  # before the heavy imports: a wrong folder fails at once
    output = Path(args.output)
    if args.overwrite and args.merge:
        raise ValueError("Pass --overwrite or --merge, not both.")
    existing = load_bank(output) if args.merge and output.exists() else None
    if output.exists() and not (args.overwrite or args.merge):
        raise FileExistsError(
            f"{output} already exists: pass --merge to add these concepts to it, --overwrite to replace it, "
            "or another --output."
        )
    if existing is not None:
        clash = sorted(set(existing.labels) & set(folders))
        if clash:
            raise ValueError(f"{output} already holds {clash}: rename those folders, or encode them into another bank.")
    from tqdm.auto import tqdm

    from processing_icpt import load_image

    # read every photo before loading the model: a bad one fails fast
    photos = [(label, path) for label, paths in folders.items() for path in paths]
    concepts = {label: [] for label in folders}
    for label, path in tqdm(photos, desc="Reading photos", unit="photo", leave=False):
        concepts[label].append(load_image(path, f"photo of {label}"))
    model, processor = load_model(args.model, args.backbone, args.device)
    bank = encode(model, processor, concepts)
    for label, length in bank.lengths.items():
        print(f"{label}: {len(concepts[label])} photo(s) -> {length} prompt token(s)")
    if existing is not None:
        bank = existing.merge(bank)
    bank.save(output)
    print(f"Saved {len(bank)} concept(s) to {output}" + (f" ({len(concepts)} new)" if existing is not None else ""))
    return 0


def run_ask(args) -> int:
    from processing_icpt import load_image

    image = load_image(args.image, "photo")
    if args.retrieve is not None and (args.bank is None or args.retrieve < 1):
        raise ValueError("--retrieve K needs --bank (the concepts to retrieve from) and K >= 1.")
    bank = load_bank(args.bank)
    model, processor = load_model(args.model, args.backbone, args.device)
    retrieved = None
    if args.retrieve:
        # the RAP flow: the bank's concepts most likely in the photo enter the prompt, named or not
        retrieval = processor.prepare_retrieval([image]).to(model.device)
        labels, scores = model.retrieve_concepts(bank, top_k=args.retrieve, return_scores=True, **retrieval)
        retrieved = labels[0]
        print("Retrieved: " + ", ".join(f"{label} ({score:.2f})" for label, score in zip(retrieved, scores[0].tolist())),
              file=sys.stderr)
    print(answer(model, processor, args.question, image, bank, args.max_new_tokens, retrieved))
    return 0


def run_chat(args) -> int:
    from processing_icpt import ICPTInputError, load_image

    image = load_image(args.image, "photo") if args.image else None
    bank = load_bank(args.bank)
    model, processor = load_model(args.model, args.backbone, args.device)
    interactive = sys.stdin.isatty()
    known = ", ".join(bank.labels) if bank is not None else "none"
    print(f"{CHAT_HELP} Concepts: {known}.")
    while True:
        if interactive:
            print("> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:  # end of input
            break
        line = line.strip()
        if not line:
            continue
        if line in ("/quit", "/exit"):
            break
        try:
            if line == "/image" or line.startswith("/image "):
                path = line[len("/image"):].strip()
                if not path:
                    raise ICPTInputError("/image needs a path: /image PATH.")
                image = load_image(path, "photo")
                print(f"Photo: {path}")
            elif line.startswith("/"):
                raise ICPTInputError(f"Unknown command {line.split()[0]}: {CHAT_HELP}")
            else:
                print(answer(model, processor, line, image, bank, args.max_new_tokens))
        except ValueError as error:  # a bad question or photo ends the turn, not the chat
            print(_one_line(f"error: {error}"), file=sys.stderr)
    return 0


def run_delegated(name: str, argv: list[str]) -> int:
    import importlib

    module_name = DELEGATED[name][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        raise FileNotFoundError(f"`icpt {name}` needs the module {module_name}, which this installation lacks: reinstall icpt.") from None
    result = module.main(argv)
    return result if isinstance(result, int) else 0


# ---------------------------------------------------------------- the parser


def _add_model_arguments(parser):
    parser.add_argument("--model", default=str(DEFAULT_MODEL), metavar="PATH_OR_REPO",
                        help="ICPT checkpoint: a folder or a Hub repo id (default: the embedded default).")
    parser.add_argument("--backbone", default=None, metavar="PATH_OR_REPO",
                        help="use this backbone instead of the one the checkpoint names (e.g. a local copy).")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: where the model loads).")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="icpt", description="Personalize a frozen vision-language model with a few photos per concept.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser, required=True)

    encode_parser = commands.add_parser(
        "encode", help="encode a folder of photos per concept into a concept bank",
        description="Encode concepts from a folder with one sub-folder of reference photos per concept "
                    "(the sub-folder's name is the label: bo/ or <bo>/ gives <bo>) into a concept bank file.")
    encode_parser.add_argument("folder", help="folder with one sub-folder of photos per concept")
    encode_parser.add_argument("--output", "-o", default="concepts.safetensors", help="the bank file to write (default: %(default)s)")
    encode_parser.add_argument("--overwrite", action="store_true", help="replace the --output bank if it exists")
    encode_parser.add_argument("--merge", action="store_true",
                               help="add these concepts to the --output bank if it exists (labels must be new)")
    _add_model_arguments(encode_parser)

    ask_parser = commands.add_parser("ask", help="answer one question about a photo",
                                     description="Answer one question about a photo, with your concepts from a bank.")
    ask_parser.add_argument("image", help="the photo")
    ask_parser.add_argument("question", help='the question, naming concepts by label, e.g. "Is <bo> in this photo?"')
    ask_parser.add_argument("--bank", help="concept bank: a file from `icpt encode`, a folder or a Hub repo id")
    ask_parser.add_argument("--max-new-tokens", type=int, default=48, help="longest answer in tokens (default: %(default)s)")
    ask_parser.add_argument("--retrieve", type=int, metavar="K",
                            help="let retrieval put the K concepts of --bank most likely in the photo into the prompt, "
                                 'so the question need not name them (e.g. "Who is in this photo?")')
    _add_model_arguments(ask_parser)

    chat_parser = commands.add_parser("chat", help="ask questions interactively",
                                      description=f"Ask questions one per line on standard input. {CHAT_HELP}")
    chat_parser.add_argument("--image", help="the first photo (default: none, for text-only questions)")
    chat_parser.add_argument("--bank", help="concept bank: a file from `icpt encode`, a folder or a Hub repo id")
    chat_parser.add_argument("--max-new-tokens", type=int, default=48, help="longest answer in tokens (default: %(default)s)")
    _add_model_arguments(chat_parser)

    for name, (_, help_text) in DELEGATED.items():
        commands.add_parser(name, help=help_text, add_help=False)
    return parser


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def main(argv: list[str] | None = None) -> int:
    """Run `icpt` with `argv` (default: `sys.argv[1:]`); returns the exit status (0 success, 2 an error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    name = argv[0] if argv else None
    try:
        if name in DELEGATED:
            return run_delegated(name, argv[1:])
        args = build_parser().parse_args(argv)
        return {"encode": run_encode, "ask": run_ask, "chat": run_chat}[args.command](args)
    except SystemExit as done:  # --help, usage errors and delegated parsers end this way
        return done.code if isinstance(done.code, int) else (0 if done.code is None else EXIT_ERROR)
    except KeyboardInterrupt:
        return 130
    except (ValueError, OSError) as error:
        # ValueError covers ICPTInputError; OSError covers FileNotFoundError, transformers' "not a valid
        # model identifier" and the Hub client's download errors
        print(_one_line(f"icpt {name or ''}: error: {error}"), file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
