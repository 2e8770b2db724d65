"""`icpt encode`: a folder with one sub-folder of photos per concept -> a concept bank file.

    icpt encode my_photos --output my_concepts.safetensors      # my_photos/bo/*.jpg, my_photos/kiki/*.jpg
    icpt encode more_photos --output my_concepts.safetensors --merge
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from icpt.data.folders import concept_folders
from icpt.inference import encode, load_bank, load_model
from processing_icpt import ICPTProcessor, load_image

from .arguments import ArgumentParser, ModelArguments


@dataclass
class EncodeArguments:
    folder: str = field(metadata={"positional": True, "help": "folder with one sub-folder of photos per concept"})
    output: str = field(default="concepts.safetensors", metadata={
        "aliases": ["-o"], "help": "the bank file to write (default: %(default)s)"})
    overwrite: bool = field(default=False, metadata={"help": "replace the --output bank if it exists"})
    merge: bool = field(default=False, metadata={
        "help": "add these concepts to the --output bank if it exists (labels must be new)"})


def main(argv=None) -> int:
    parser = ArgumentParser(
        (EncodeArguments, ModelArguments), prog="icpt encode",
        description="Encode concepts from a folder with one sub-folder of reference photos per concept "
                    "(the sub-folder's name is the label: bo/ or <bo>/ gives <bo>) into a concept bank file.")
    args, model_args = parser.parse(argv)
    folders = concept_folders(args.folder)  # before the model loads: a wrong folder fails at once
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
    # read every photo before loading the model: a bad one fails fast
    photos = [(label, path) for label, paths in folders.items() for path in paths]
    concepts = {label: [] for label in folders}
    for label, path in tqdm(photos, desc="Reading photos", unit="photo", leave=False):
        concepts[label].append(load_image(path, f"photo of {label}"))
    model = load_model(model_args.model, model_args.backbone, model_args.device)
    bank = encode(model, ICPTProcessor.from_pretrained(model_args.model), concepts)
    for label, length in bank.lengths.items():
        print(f"{label}: {len(concepts[label])} photo(s) -> {length} prompt token(s)")
    if existing is not None:
        bank = existing.merge(bank)
    bank.save(output)
    print(f"Saved {len(bank)} concept(s) to {output}" + (f" ({len(concepts)} new)" if existing is not None else ""))
    return 0
