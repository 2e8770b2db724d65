"""Personalize a real vision-language model from the Hub with ICPT, end to end, on a GPU.

    # a folder with one sub-folder of photos per concept: my_photos/bo/*.jpg, my_photos/kiki/*.jpg
    python examples/personalize_real_checkpoint.py --backbone Qwen/Qwen2.5-VL-3B-Instruct \
        --photos my_photos --image new_photo.jpg --question "Is <bo> in this photo?"

    # or LLaVA-1.5, with a trained projector from the Hub instead of a short training run
    python examples/personalize_real_checkpoint.py --backbone llava-hf/llava-1.5-7b-hf \
        --projector me/icpt-llava-1.5-7b --photos my_photos --image new_photo.jpg

What it does:
1. wraps the frozen backbone with an ICPT projector (`from_backbone`), or loads a trained one (`--projector`);
2. without `--projector`, trains the projector briefly (`--train_steps`) on episodes: `--episodes` (a dataset
   saved with `Dataset.save_to_disk`, columns `icpt.episodes.EPISODE_FEATURES`, e.g. from `icpt.data.benchmarks`)
   or, by default, recognition episodes made from your own photos (each photo held out in turn as the query,
   the concept's other photos as references, photos of your other concepts as negatives). A projector that
   has seen only your few concepts will not generalize far: for real use, train on many concepts once and
   reuse that projector for everyone's concepts, as `--projector` does;
3. encodes your concepts from all their photos (one forward pass each, no training) into a concept bank;
4. answers `--question` about `--image` and saves projector, processor and bank in `--output_dir`
   (`--push_to_hub REPO` also uploads the projector with its model card).

Photos are shrunk to `--max_side` pixels first, so references cost a bounded number of image tokens.
"""

import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from datasets import Dataset, load_from_disk
from PIL import Image
from transformers import TrainingArguments

from icpt.cards import card_for
from icpt.commands.arguments import ArgumentParser
from icpt.data.folders import concept_folders
from icpt.episodes import EPISODE_FEATURES
from icpt.inference import answer, encode
from icpt.training.trainer import EpisodeCollator, ICPTTrainer
from modeling_icpt import ICPTForConditionalGeneration
from processing_icpt import ICPTProcessor, load_image

RECOGNITION = "Can you see {label} in this photo? Answer with a single word or phrase."


def load_photo(path, max_side: int) -> Image.Image:
    image = load_image(path, "photo")
    image.thumbnail((max_side, max_side))
    return image


def photo_episodes(concepts: dict[str, list[Image.Image]], max_references: int) -> Dataset:
    """Recognition episodes from the user's photos: each photo in turn is the query, the others the references."""
    if len(concepts) < 2 or any(len(photos) < 2 for photos in concepts.values()):
        raise ValueError("Training on your photos needs at least 2 concepts with at least 2 photos each "
                         "(or pass --episodes, or a trained --projector).")
    rows = []
    for label, photos in concepts.items():
        others = [photo for other, their in concepts.items() if other != label for photo in their]
        for i, query in enumerate(photos):
            references = (photos[:i] + photos[i + 1:])[:max_references]
            concept = [{"name": label, "references": references, "masks": [], "description": None}]
            for image, answer_text, present in ((query, "Yes", [label]), (others[i % len(others)], "No", [])):
                rows.append({"concepts": concept, "image": image, "question": RECOGNITION.format(label=label),
                             "answer": answer_text, "task": "recognition", "target": label, "options": [],
                             "present": present, "tags": []})
    return Dataset.from_list(rows, features=EPISODE_FEATURES)


@dataclass
class PersonalizeArguments:
    photos: str = field(metadata={"help": "folder with one sub-folder of photos per concept"})
    image: str = field(metadata={"help": "the photo to ask about"})
    backbone: str = field(default="Qwen/Qwen2.5-VL-3B-Instruct", metadata={"help": "Hub id or folder of the VLM"})
    projector: str | None = field(default=None, metadata={
        "help": "a trained ICPT checkpoint for this backbone (skips training)"})
    question: str | None = field(default=None, metadata={
        "help": "default: a recognition question about the first concept"})
    episodes: str | None = field(default=None, metadata={
        "help": "training episodes (a save_to_disk folder); default: your photos"})
    train_steps: int = field(default=200, metadata={"help": "steps of the short projector training"})
    batch_size: int = field(default=4, metadata={"help": "episodes per training step"})
    learning_rate: float = field(default=1e-4, metadata={"help": "the projector's learning rate"})
    max_prompt_length: int = field(default=8, metadata={"help": "most prompt rows per concept (a fresh projector)"})
    max_side: int = field(default=448, metadata={"help": "photos are shrunk to this many pixels per side"})
    output_dir: str = field(default="outputs/personalized", metadata={"help": "projector, processor and bank go here"})
    push_to_hub: str | None = field(default=None, metadata={
        "metavar": "REPO", "help": "also upload the projector (with its model card) to this repo"})
    device: str = field(default="cuda" if torch.cuda.is_available() else "cpu", metadata={"help": "where to run"})
    dtype: str = field(default="bfloat16", metadata={"choices": ["bfloat16", "float16", "float32"],
                       "help": "the backbone's dtype (the projector trains in float32)"})


def main(argv=None) -> str:
    parser = ArgumentParser(PersonalizeArguments, prog="python examples/personalize_real_checkpoint.py",
                            description=__doc__.split("\n\n")[0])
    (args,) = parser.parse(argv)
    dtype = getattr(torch, args.dtype)
    output_dir = Path(args.output_dir)
    torch.manual_seed(0)

    concepts = {label: [load_photo(p, args.max_side) for p in paths]
                for label, paths in concept_folders(args.photos).items()}
    question = args.question or RECOGNITION.format(label=next(iter(concepts)))

    # 1. the frozen backbone with a projector: a trained one, or a fresh one to train
    if args.projector:
        processor = ICPTProcessor.from_pretrained(args.projector)
        model = ICPTForConditionalGeneration.from_pretrained(args.projector, dtype=dtype)
    else:
        processor = ICPTProcessor.from_backbone(args.backbone, max_prompt_length=args.max_prompt_length)
        model = ICPTForConditionalGeneration.from_backbone(
            args.backbone, prompt_token_id=processor.prompt_token_id, max_prompt_length=args.max_prompt_length,
            dtype=dtype)
    model.to(args.device)
    print(f"{args.backbone}: projector with {sum(p.numel() for p in model.projector.parameters()) / 1e6:.1f} M "
          f"parameters, backbone {sum(p.numel() for p in model.vlm.parameters()) / 1e9:.2f} B (frozen)")

    # 2. a short training run of the projector alone
    if not args.projector:
        episodes = (load_from_disk(args.episodes) if args.episodes
                    else photo_episodes(concepts, model.config.max_references))
        training = TrainingArguments(
            output_dir=str(output_dir / "training"), max_steps=args.train_steps,
            per_device_train_batch_size=args.batch_size, learning_rate=args.learning_rate, warmup_steps=0,
            logging_steps=max(1, args.train_steps // 20), save_strategy="no", report_to="none",
            remove_unused_columns=False, dataloader_num_workers=0, use_cpu=args.device == "cpu",
            bf16=args.device != "cpu" and dtype == torch.bfloat16, seed=0,
        )
        collator = EpisodeCollator(processor, model.config.min_prompt_length, model.config.max_prompt_length,
                                   background_views=model.config.decoupling_weight > 0)
        ICPTTrainer(model=model, args=training, train_dataset=episodes, data_collator=collator).train()
        model.eval()
        model.save_pretrained(output_dir / "projector")
        processor.save_pretrained(output_dir / "projector")
        if args.push_to_hub:
            model.push_to_hub(args.push_to_hub, processor=processor, card=card_for(model))

    # 3. encode the concepts once, keep the bank
    bank = encode(model, processor, concepts)
    bank.save(output_dir / "concepts.safetensors")
    for label, length in bank.lengths.items():
        print(f"{label}: {len(concepts[label])} photo(s) -> {length} prompt token(s)")

    # 4. ask
    reply = answer(model, processor, question, load_photo(args.image, args.max_side), bank)
    print(f"Q: {question}\nA: {reply}")
    return reply


if __name__ == "__main__":
    main(sys.argv[1:])
