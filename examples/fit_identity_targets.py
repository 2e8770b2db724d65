"""Fit identity targets: prompt rows per training identity, which `icpt train --identity_targets FILE` regresses the
projector onto (`icpt.training.identity_targets`; docs/default_model.md tells why).

The rows are fitted on the backbone alone (no projector, no reader adapter), so the targets depend on the backbone
and these settings only. About 33 s per identity on one CPU core at 30 steps; the file is rewritten after each
identity, so an interrupted run resumes where it stopped. Several processes split the work and are merged afterwards:

    python examples/fit_identity_targets.py --output outputs/targets/part0.safetensors --identities 800 --part 0 --parts 2
    python examples/fit_identity_targets.py --output outputs/targets/part1.safetensors --identities 800 --part 1 --parts 2
    python examples/fit_identity_targets.py --output outputs/targets/all.safetensors --identities 800 --merge outputs/targets/part*.safetensors
"""

import sys
from dataclasses import dataclass, field

import torch

from icpt.commands.arguments import ArgumentParser
from icpt.inference import DEFAULT_BACKBONE
from icpt.training.identity_targets import fit_identity_targets, identity_order, merge_identity_targets, training_scenes
from icpt.world.world import world_for
from modeling_icpt import ICPTForConditionalGeneration
from processing_icpt import ICPTProcessor


@dataclass
class TargetArguments:
    output: str = field(metadata={"help": "the .safetensors file to write (and resume)"})
    identities: int = field(default=800, metadata={"help": "how many training identities (a fixed random order of the training split)"})
    part: int = field(default=0, metadata={"help": "this process fits every --parts-th identity from --part"})
    parts: int = field(default=1, metadata={"help": "how many processes share the identities"})
    rows: int = field(default=8, metadata={"help": "prompt rows per identity"})
    steps: int = field(default=60, metadata={"help": "full-batch steps per identity"})
    scenes: int = field(default=16, metadata={"help": "scenes with and without the identity, each"})
    seed: int = field(default=0, metadata={"help": "seed of the rows' start and of the scenes"})
    threads: int = field(default=1, metadata={"help": "CPU threads for torch"})
    backbone: str = field(default=str(DEFAULT_BACKBONE), metadata={"help": "the backbone folder (with its world.json)"})
    prompt_norm: float | None = field(default=None, metadata={
        "help": "the rows' starting norm (default: the median norm of the backbone's image tokens on 8 training scenes, "
                "where `icpt train` starts a fresh projector's rows)"})
    merge: list[str] | None = field(default=None, metadata={
        "help": "merge these parts (their first --identities identities) into --output instead of fitting"})


def main(argv=None):
    parser = ArgumentParser(TargetArguments, prog="python examples/fit_identity_targets.py",
                            description=__doc__.split("\n\n")[0])
    (args,) = parser.parse(argv)
    if not 0 <= args.part < args.parts:
        parser.error(f"--part must lie in [0, --parts), got {args.part} of {args.parts}")
    world = world_for(args.backbone)
    try:
        order = identity_order(world, args.identities)
    except ValueError as error:
        parser.error(str(error))
    if args.merge:
        merged = merge_identity_targets(args.merge, args.output, keep=order)
        print(f"{len(merged)} identities -> {args.output}")
        return merged
    torch.set_num_threads(args.threads)
    processor = ICPTProcessor.from_backbone(args.backbone, max_prompt_length=args.rows)
    model = ICPTForConditionalGeneration.from_backbone(args.backbone, prompt_token_id=processor.prompt_token_id,
                                                       max_prompt_length=args.rows).eval()
    if args.prompt_norm is not None:
        model.set_prompt_norm(args.prompt_norm)
    else:
        photos = training_scenes(world, 8)
        messages = [[{"role": "user", "content": [{"type": "image"}]}] for _ in photos]
        model.match_image_token_norm(**processor(messages=messages, images=[[photo] for photo in photos]))
    print(f"rows start at norm {model.config.prompt_norm:.3f}")
    targets = fit_identity_targets(model, processor, world, order[args.part::args.parts], args.output,
                                   num_rows=args.rows, steps=args.steps, scenes=args.scenes, seed=args.seed)
    print(f"{len(targets)} identities -> {args.output}")
    return targets


if __name__ == "__main__":
    main(sys.argv[1:])
