"""`icpt chat`: questions one per line on standard input, answers on standard output.

    icpt chat --image photo.jpg --bank my_concepts.safetensors   # /image PATH switches the photo, /quit ends
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from icpt.inference import answer, load_bank, load_model
from processing_icpt import ICPTInputError, ICPTProcessor, load_image

from .arguments import ArgumentParser, ModelArguments

CHAT_HELP = "Type a question about the current photo; /image PATH switches the photo, /quit ends."


@dataclass
class ChatArguments:
    image: str | None = field(default=None, metadata={"help": "the first photo (default: none, for text-only questions)"})
    bank: str | None = field(default=None, metadata={
        "help": "concept bank: a file from `icpt encode`, a folder or a Hub repo id"})
    max_new_tokens: int = field(default=48, metadata={"help": "longest answer in tokens (default: %(default)s)"})


def main(argv=None) -> int:
    parser = ArgumentParser((ChatArguments, ModelArguments), prog="icpt chat",
                            description=f"Ask questions one per line on standard input. {CHAT_HELP}")
    args, model_args = parser.parse(argv)
    image = load_image(args.image, "photo") if args.image else None
    bank = load_bank(args.bank)
    model = load_model(model_args.model, model_args.backbone, model_args.device)
    processor = ICPTProcessor.from_pretrained(model_args.model)
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
            print(" ".join(f"error: {error}".split()), file=sys.stderr)
    return 0
