"""`icpt serve`: the web app (`icpt.app`): add concepts from photos, ask about new photos, save and load banks.

    icpt serve                                   # the embedded default, http://127.0.0.1:7860
    icpt serve --model PATH_OR_REPO --port 8080  # any ICPT checkpoint
"""

import sys
from dataclasses import dataclass, field

import torch

from icpt import app

from .arguments import EXIT_ERROR, ArgumentParser, ModelArguments


@dataclass
class ServeArguments:
    host: str = field(default="127.0.0.1", metadata={"help": "address to listen on (0.0.0.0: every interface)"})
    port: int = field(default=7860, metadata={"help": "port (default: %(default)s)"})
    max_new_tokens: int = field(default=24, metadata={"help": "longest answer in tokens (default: %(default)s)"})
    threads: int | None = field(default=None, metadata={"help": "CPU threads for torch"})


def main(argv=None) -> int:
    parser = ArgumentParser((ModelArguments, ServeArguments), prog="icpt serve", description=__doc__.split("\n\n")[0])
    model_args, args = parser.parse(argv)
    if app.gr is None:
        print("icpt serve: error: the web app needs gradio: pip install 'icpt[app]' (scripts/bootstrap.sh installs it).",
              file=sys.stderr)
        return EXIT_ERROR
    if args.threads:
        torch.set_num_threads(args.threads)
    concept_app = app.ConceptApp.from_pretrained(model_args.model, model_args.backbone, model_args.device,
                                                 max_new_tokens=args.max_new_tokens)
    concept_app.launch(args.host, args.port)
    return 0
