"""One training run of an ICPT projector on episodes, with the backbone frozen: the library behind `icpt train` and
`examples/train_icpt.py` (`train(args, training_args)`).

One process (CPU or one GPU):

    icpt train --backbone icpt/default/backbone --output_dir outputs/projector \
        --max_steps 600 --per_device_train_batch_size 16 --learning_rate 3e-4

Several GPUs, unchanged (see examples/accelerate_configs/multi_gpu.yaml):

    accelerate launch --config_file examples/accelerate_configs/multi_gpu.yaml examples/train_icpt.py --backbone ... --output_dir ...

`--backbone` starts a fresh projector around that backbone; `--model` continues training an existing ICPT
checkpoint (its projector settings are kept; the projector options below are then ignored); with neither,
training continues from the embedded default checkpoint.

Episodes come from `--episodes` (a folder written by `Dataset.save_to_disk` with the columns of
`icpt.episodes.EPISODE_FEATURES`) or, by default, are generated from the project's world
(training identities and environment set A only). Every checkpoint holds only the projector; an
interrupted run resumes where it stopped with `--resume_from_checkpoint` (or `--resume_from_checkpoint
latest`) and ends with the same weights as an uninterrupted run. A run records what it was started
with in `run_settings.json`; resuming a folder started with other settings (or recorded none) is refused.

Example:

```python
>>> from transformers import TrainingArguments
>>> from icpt.training.run import ICPTArguments, train
>>> trainer = train(ICPTArguments(backbone="path/to/backbone"),
...                 TrainingArguments(output_dir="outputs/projector", max_steps=10))  # doctest: +SKIP
```
"""

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from datasets import load_from_disk
from transformers import TrainerState, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

from icpt.inference import DEFAULT_MODEL, load_model
from icpt.world.tasks import build_episodes
from icpt.world.world import world_for
from modeling_icpt import ICPTForConditionalGeneration
from processing_icpt import ICPTProcessor

from .identity_targets import IdentityTargets, TargetReferences
from .swapped_twins import add_swapped_twins
from .trainer import EpisodeCollator, ICPTTrainer, RecognitionMetrics

logger = logging.getLogger(__name__)


@dataclass
class ICPTArguments:
    backbone: str | None = field(default=None, metadata={"help": "Hub id or local path of the frozen backbone (a fresh projector)."})
    model: str | None = field(default=None, metadata={"help": "An ICPT checkpoint (folder or Hub id) to continue training; default with no --backbone: the embedded default."})
    episodes: str | None = field(default=None, metadata={"help": "Episode dataset folder (save_to_disk); default: the generated world."})
    world_episodes: int = field(default=2000, metadata={"help": "Training episodes to generate from the world the backbone was trained on (its world.json; when --episodes is not given)."})
    eval_episodes: str | None = field(default=None, metadata={"help": "Held-out episodes (a save_to_disk folder, e.g. OUTPUT/eval of `icpt episodes`): weighted recognition at each evaluation step (--eval_strategy steps --eval_steps N); keep the best with --load_best_model_at_end --metric_for_best_model recognition_weighted."})
    eval_world_episodes: int = field(default=0, metadata={"help": "Held-out recognition episodes to generate from the backbone's world instead of --eval_episodes (identities the training never sees)."})
    min_prompt_length: int | None = field(default=None, metadata={"help": "Fewest prompt rows per concept (default: --max_prompt_length); below it the length rule chooses by visual complexity (off by default: it did not help, docs/results.md)."})
    max_prompt_length: int = field(default=8, metadata={"help": "Most prompt rows per concept."})
    adaptive_length: bool = field(default=True, metadata={"help": "Length by visual complexity; False = always max (ablation)."})
    projector_hidden_size: int = field(default=256, metadata={"help": "Width of the projector's attention blocks."})
    projector_layers: int = field(default=2, metadata={"help": "Projector blocks."})
    projector_heads: int = field(default=4, metadata={"help": "Attention heads per block."})
    decoupling_weight: float = field(default=0.0, metadata={"help": "λ_dec, weight of the identity/environment decoupling loss (off by default: its ablation showed no effect, docs/results.md; the shipped default was trained with 0.1)."})
    separation_weight: float = field(default=0.0, metadata={"help": "λ_sep, weight of the concept-separation loss (off by default: with identity targets and a reader adapter its ablation showed no effect, docs/method.md §6; 1.0 is the weight its ablation row uses)."})
    separation_margin: float = field(default=0.1, metadata={"help": "Cosine margin m of the separation loss."})
    identity_targets: str | None = field(default=None, metadata={"help": "Identity target rows (a .safetensors file from `examples/fit_identity_targets.py`): the projector is also regressed onto them; needs --backbone with its world.json."})
    identity_target_weight: float = field(default=10.0, metadata={"help": "λ_id, weight of the regression onto --identity_targets (recorded in the checkpoint's config; 0 without targets). At 1 the LM loss drowned it on the embedded default (docs/default_model.md)."})
    identity_target_batch: int = field(default=16, metadata={"help": "Identities per step for the regression term."})
    prompt_norm: float | None = field(default=None, metadata={"help": "Initial norm of the prompt rows of a fresh projector; default: the median norm of the backbone's image tokens on a few training photos (the rows stand where photos would)."})
    reader_lora_rank: int = field(default=0, metadata={"help": "Rank of a LoRA adapter on the backbone's language model, trained with the projector and saved in the same checkpoint (the reader learns to read the rows); 0 = frozen reader. Added to a --model checkpoint that has none."})
    reader_lora_alpha: float = field(default=32.0, metadata={"help": "LoRA alpha of the reader adapter (its update is scaled by alpha / rank)."})
    swapped_twins: int = field(default=0, metadata={"help": "Swapped twins per positive recognition episode (0 = none): each has the same query and question, the concept's photos another identity's and the answer negative, and comes with the positive again, its photos reordered (as many yes as no; icpt.training.swapped_twins): only the rows tell the twins apart, so a reader adapter learns to read them instead of answering from the query photo."})


def load_episodes(args: ICPTArguments):
    if args.episodes:
        if not Path(args.episodes).is_dir():
            raise FileNotFoundError(f"No episode dataset at {args.episodes}: write one with Dataset.save_to_disk.")
        return load_from_disk(args.episodes)
    # the backbone's own world, so its held-out identities stay held out here too
    if args.backbone is None or not (Path(args.backbone) / "world.json").is_file():
        raise ValueError("Without --episodes, --backbone must be a folder with world.json (a backbone trained on the "
                         "generated world, e.g. icpt/default/backbone); otherwise pass --episodes DIR.")
    return build_episodes(world_for(Path(args.backbone)), "train", args.world_episodes)


def load_eval_episodes(args: ICPTArguments, training_args: TrainingArguments):
    """The held-out episodes of the evaluation during training, or None."""
    if args.eval_episodes and args.eval_world_episodes:
        raise ValueError("Pass --eval_episodes or --eval_world_episodes, not both.")
    if not (args.eval_episodes or args.eval_world_episodes):
        return None
    if training_args.eval_strategy == "no":
        raise ValueError("Evaluation episodes need an evaluation schedule: add --eval_strategy steps --eval_steps N "
                         "(e.g. the --save_steps value, which --load_best_model_at_end requires).")
    if args.eval_episodes:
        if not Path(args.eval_episodes).is_dir():
            raise FileNotFoundError(f"No episode dataset at {args.eval_episodes}: write one with `icpt episodes` "
                                    "(OUTPUT/eval) or Dataset.save_to_disk.")
        return load_from_disk(args.eval_episodes)
    if args.backbone is None or not (Path(args.backbone) / "world.json").is_file():
        raise ValueError("--eval_world_episodes needs --backbone: a folder with world.json; otherwise pass --eval_episodes DIR.")
    return build_episodes(world_for(Path(args.backbone)), "held_out", args.eval_world_episodes, seed=1,
                          tasks=("recognition",))


def build_model(args: ICPTArguments):
    """The model to train and its processor: a fresh projector around `--backbone`, or the checkpoint `--model`."""
    if args.backbone and not args.model:
        processor = ICPTProcessor.from_backbone(args.backbone, max_prompt_length=args.max_prompt_length)
        model = ICPTForConditionalGeneration.from_backbone(
            args.backbone,
            prompt_token_id=processor.prompt_token_id,
            min_prompt_length=args.min_prompt_length,
            max_prompt_length=args.max_prompt_length,
            adaptive_length=args.adaptive_length,
            projector_hidden_size=args.projector_hidden_size,
            projector_layers=args.projector_layers,
            projector_heads=args.projector_heads,
            decoupling_weight=args.decoupling_weight,
            separation_weight=args.separation_weight,
            separation_margin=args.separation_margin,
            identity_target_weight=args.identity_target_weight if args.identity_targets else 0.0,
            reader_lora_rank=args.reader_lora_rank,
            reader_lora_alpha=args.reader_lora_alpha,
        )
        return model, processor
    checkpoint = args.model or DEFAULT_MODEL
    model, processor = load_model(checkpoint, backbone=args.backbone), ICPTProcessor.from_pretrained(checkpoint)
    model.config.identity_target_weight = args.identity_target_weight if args.identity_targets else 0.0
    if args.reader_lora_rank > 0 and model.config.reader_lora_rank == 0:
        model.add_reader_adapter(args.reader_lora_rank, args.reader_lora_alpha)
    elif args.reader_lora_rank not in (0, model.config.reader_lora_rank):
        raise ValueError(f"{args.model or DEFAULT_MODEL} already has a reader adapter of rank {model.config.reader_lora_rank}: "
                         f"continue it (no --reader_lora_rank) or train a new one from a checkpoint without one.")
    return model.train(), processor


def load_target_references(args: ICPTArguments, model, processor, seed: int):
    """The regression term's data (`icpt.training.identity_targets.TargetReferences`), or None without --identity_targets."""
    if not args.identity_targets:
        return None
    if args.identity_target_weight <= 0:
        raise ValueError("--identity_targets needs --identity_target_weight > 0 (0 would ignore the targets).")
    if args.backbone is None or not (Path(args.backbone) / "world.json").is_file():
        raise ValueError("--identity_targets needs --backbone: a folder with world.json (the world the targets' "
                         "identities come from, e.g. icpt/default/backbone).")
    targets = IdentityTargets.load(args.identity_targets)
    expected = (model.config.max_prompt_length, model.config.text_hidden_size)
    if len(targets) and tuple(targets.rows.shape[1:]) != expected:
        raise ValueError(f"{args.identity_targets} holds {tuple(targets.rows.shape[1:])} rows per identity but the "
                         f"projector writes {expected}: fit targets with --rows {expected[0]} for this backbone.")
    return TargetReferences(targets, world_for(Path(args.backbone)), processor, batch_size=args.identity_target_batch,
                            seed=seed)


def start_prompt_norm(model, processor, episodes, prompt_norm: float | None = None, num_photos: int = 8) -> float:
    """Sets (and returns) the initial norm of a fresh projector's rows: `prompt_norm` when given, else
    the median norm of the backbone's image tokens on the query photos of the first episodes."""
    if prompt_norm is not None:
        model.set_prompt_norm(prompt_norm)
        return prompt_norm
    photos = [row["image"] for row in episodes.select(range(min(len(episodes), 4 * num_photos))) if row["image"] is not None]
    if not photos:
        raise ValueError("No episode among the first ones has a query photo to measure the image-token norm: "
                         "pass --prompt_norm.")
    photos = photos[:num_photos]
    messages = [[{"role": "user", "content": [{"type": "image"}]}] for _ in photos]
    return model.match_image_token_norm(**processor(messages=messages, images=[[photo] for photo in photos]))


# The training arguments that make a run what it is; output, logging and saving options, and the step count
# (a finished run may be extended), may change between sittings.
RUN_TRAINING_ARGUMENTS = ("seed", "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps",
                          "lr_scheduler_type", "warmup_steps", "weight_decay")
RUN_SETTINGS_FILE = "run_settings.json"


def run_settings(args: ICPTArguments, training_args: TrainingArguments, episodes) -> dict:
    """What a run was started with, recorded in its output folder so a resume can check it continues the same run."""
    settings = {"icpt": asdict(args), "training": {name: getattr(training_args, name) for name in RUN_TRAINING_ARGUMENTS},
                "episodes": len(episodes)}
    if args.identity_targets:  # the same path may hold other targets by the time a run resumes
        settings["identity_targets_sha256"] = hashlib.sha256(Path(args.identity_targets).read_bytes()).hexdigest()
    return json.loads(json.dumps(settings, default=str))  # the form they take once read back


def check_resumed_settings(checkpoint: str, settings: dict) -> None:
    """Refuses to resume a checkpoint whose run was started with other settings (or recorded none)."""
    recorded_path = Path(checkpoint).parent / RUN_SETTINGS_FILE
    if not recorded_path.is_file():
        raise ValueError(f"{checkpoint} belongs to a run without {RUN_SETTINGS_FILE}, so it cannot be checked that "
                         f"resuming it continues the same run: train into a new --output_dir, or drop "
                         f"--resume_from_checkpoint to start over.")
    recorded, current = _flatten(json.loads(recorded_path.read_text())), _flatten(settings)
    # an option added after the run began was, for that run, at its default
    defaults = _flatten(json.loads(json.dumps({"icpt": asdict(ICPTArguments())}, default=str)))
    recorded = {**{name: value for name, value in defaults.items() if name not in recorded}, **recorded}
    differs = [name for name in sorted(set(recorded) | set(current)) if recorded.get(name) != current.get(name)]
    if differs:
        raise ValueError(f"{checkpoint} was trained with other settings ({', '.join(differs)} differ; see "
                         f"{recorded_path}): resuming it would mix two runs. Train into a new --output_dir, or pass "
                         f"the run's own settings.")


def _flatten(settings: dict) -> dict:
    """{"icpt": {"seed": 0}} -> {"icpt.seed": 0}, so a difference can be named."""
    flat = {}
    for key, value in settings.items():
        flat.update({f"{key}.{name}": item for name, item in _flatten(value).items()} if isinstance(value, dict) else {key: value})
    return flat


def record_run_settings(output_dir: str, settings: dict) -> None:
    path = Path(output_dir) / RUN_SETTINGS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(settings, indent=2, sort_keys=True))
    os.replace(temporary, path)  # a complete file or the previous one


def train(args: ICPTArguments, training_args: TrainingArguments) -> ICPTTrainer:
    """Build the model, episodes and trainer of `args`, train (or resume), and save the projector and processor to
    `training_args.output_dir`; returns the trainer."""
    training_args.remove_unused_columns = False  # the collator needs the raw episode columns
    resume = training_args.resume_from_checkpoint
    if resume == "latest":
        resume = get_last_checkpoint(training_args.output_dir) if Path(training_args.output_dir).is_dir() else None

    set_seed(training_args.seed)  # the projector's initial weights come from this seed
    model, processor = build_model(args)
    episodes = load_episodes(args)
    if args.swapped_twins:
        episodes = add_swapped_twins(episodes, args.swapped_twins, seed=training_args.seed)
    if args.backbone and not args.model:
        norm = start_prompt_norm(model, processor, episodes, args.prompt_norm)
        logger.info("Prompt rows start at norm %.3g", norm)
    target_references = load_target_references(args, model, processor, training_args.seed)
    if target_references is not None:
        logger.info("Regressing onto the targets of %d identities (weight %s)", len(target_references.targets),
                    model.config.identity_target_weight)
    collator = EpisodeCollator(processor, model.config.min_prompt_length, model.config.max_prompt_length,
                               seed=training_args.seed, target_references=target_references,
                               background_views=model.config.decoupling_weight > 0)
    settings = run_settings(args, training_args, episodes)
    if resume:
        check_resumed_settings(resume, settings)
    eval_episodes = load_eval_episodes(args, training_args)
    trainer = ICPTTrainer(model=model, args=training_args, train_dataset=episodes, data_collator=collator,
                          eval_dataset=eval_episodes,
                          compute_metrics=RecognitionMetrics(processor.tokenizer) if eval_episodes is not None else None)
    if trainer.is_world_process_zero():
        record_run_settings(training_args.output_dir, settings)
    resumed_state = TrainerState.load_from_json(str(Path(resume) / "trainer_state.json")) if resume else None
    if resumed_state is not None and 0 < training_args.max_steps <= resumed_state.global_step:
        # Trainer would run one more step when --max_steps ends inside an epoch; a finished run only saves again
        logger.info("%s already reached --max_steps %d: saving it without training", resume, training_args.max_steps)
        trainer._load_from_checkpoint(resume)
        trainer.state = resumed_state
    else:
        trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(training_args.output_dir)
    if trainer.is_world_process_zero():
        processor.save_pretrained(training_args.output_dir)
    return trainer
