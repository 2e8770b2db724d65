"""Quickstart: teach an ICPT model your concept from a few photos, then ask about a new photo.

    python examples/quickstart.py path/to/icpt-checkpoint \
        --label "<bo>" --photos bo_1.jpg bo_2.jpg bo_3.jpg \
        --image new_photo.jpg --question "Is <bo> in this photo?"

The checkpoint is an ICPT projector: a folder written by `save_pretrained` (e.g. by `icpt train`) or a Hub
repo id. Loading it loads the frozen backbone it names, then the projector on top. Adding the concept is one
forward pass of the projector (no training); the encoded concept (a `ConceptBank`) is saved, so later
questions need neither the photos nor a new encoding.
"""

import sys
from dataclasses import dataclass, field

from icpt.commands.arguments import ArgumentParser
from modeling_icpt import ConceptBank, ICPTForConditionalGeneration
from processing_icpt import ICPTProcessor


@dataclass
class QuickstartArguments:
    checkpoint: str = field(metadata={"positional": True, "help": "ICPT checkpoint: a folder or a Hub repo id"})
    photos: list[str] = field(metadata={"help": "a few photos of the concept"})
    image: str = field(metadata={"help": "the photo to ask about"})
    label: str = field(default="<bo>", metadata={"help": "the concept's label, one word in angle brackets"})
    question: str | None = field(default=None, metadata={"help": 'default: "Is LABEL in this photo?"'})
    bank: str = field(default="my_concepts.safetensors", metadata={"help": "where to save the encoded concept"})


def main(argv=None) -> str:
    parser = ArgumentParser(QuickstartArguments, prog="python examples/quickstart.py",
                            description=__doc__.split("\n\n")[0])
    (args,) = parser.parse(argv)
    question = args.question or f"Is {args.label} in this photo? Answer with a single word or phrase."

    # 1. the frozen backbone named in the checkpoint's config, with the trained projector on top
    model = ICPTForConditionalGeneration.from_pretrained(args.checkpoint).eval()
    processor = ICPTProcessor.from_pretrained(args.checkpoint)

    # 2. encode the concept once: a few prompt vectors bound to its label
    bank = model.encode_concepts(**processor.prepare_references({args.label: args.photos}))
    bank.save(args.bank)
    print(f"{args.label}: {len(args.photos)} photo(s) -> {bank.lengths[args.label]} prompt token(s), saved to {args.bank}")

    # 3. ask: the label in the question refers to the concept; a later session starts from the saved bank
    bank = ConceptBank.load(args.bank)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    inputs = processor(messages=messages, images=[[args.image]], concepts=bank)
    output = model.generate(**inputs, concepts=bank, max_new_tokens=32, do_sample=False)
    answer = processor.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    print(f"Q: {question}\nA: {answer}")
    return answer


if __name__ == "__main__":
    main(sys.argv[1:])
