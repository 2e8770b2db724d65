"""`icpt ask`: one question about a photo, with your concepts from a bank.

    icpt ask photo.jpg "Is <bo> in this photo?" --bank my_concepts.safetensors
    icpt ask photo.jpg "Who is in this photo?" --bank my_concepts.safetensors --retrieve 2
    icpt ask photo.jpg "Is <bo> on the left or on the right?" --bank my_concepts.safetensors --options "on the left" "on the right"
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from icpt.inference import answer, choose, load_bank, load_model
from processing_icpt import ICPTProcessor, load_image

from .arguments import ArgumentParser, ModelArguments


@dataclass
class AskArguments:
    image: str = field(metadata={"positional": True, "help": "the photo"})
    question: str = field(metadata={"positional": True,
                                    "help": 'the question, naming concepts by label, e.g. "Is <bo> in this photo?"'})
    bank: str | None = field(default=None, metadata={
        "help": "concept bank: a file from `icpt encode`, a folder or a Hub repo id"})
    max_new_tokens: int = field(default=48, metadata={"help": "longest answer in tokens (default: %(default)s)"})
    retrieve: int | None = field(default=None, metadata={
        "metavar": "K", "help": "let retrieval put the K concepts of --bank most likely in the photo into the prompt, "
                                'so the question need not name them (e.g. "Who is in this photo?")'})
    options: list[str] | None = field(default=None, metadata={
        "help": "answer with the one of these options the model finds most likely instead of generating, e.g. "
                '--options red blue for "Is <bo> red or blue?"'})


def main(argv=None) -> int:
    parser = ArgumentParser((AskArguments, ModelArguments), prog="icpt ask",
                            description="Answer one question about a photo, with your concepts from a bank.")
    args, model_args = parser.parse(argv)
    image = load_image(args.image, "photo")
    if args.retrieve is not None and (args.bank is None or args.retrieve < 1):
        raise ValueError("--retrieve K needs --bank (the concepts to retrieve from) and K >= 1.")
    bank = load_bank(args.bank)
    model = load_model(model_args.model, model_args.backbone, model_args.device)
    processor = ICPTProcessor.from_pretrained(model_args.model)
    retrieved = None
    if args.retrieve:
        # the RAP flow: the bank's concepts most likely in the photo enter the prompt, named or not
        retrieval = processor.prepare_retrieval([image]).to(model.device)
        labels, scores = model.retrieve_concepts(bank, top_k=args.retrieve, return_scores=True, **retrieval)
        retrieved = labels[0]
        print("Retrieved: " + ", ".join(f"{label} ({score:.2f})" for label, score in zip(retrieved, scores[0].tolist())),
              file=sys.stderr)
    if args.options:
        print(choose(model, processor, args.question, args.options, image, bank, retrieved))
    else:
        print(answer(model, processor, args.question, image, bank, args.max_new_tokens, retrieved))
    return 0
