"""The settings of a pretraining run, a dataclass for `HfArgumentParser` (`--patch-size 8` and `--patch_size 8` both
parse). The field order is the order of the run's `args.json` and of `training_results.json`'s `"args"`."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from icpt.episodes import TASKS


@dataclass
class PretrainArguments:
    """How to build, train, measure and export the world backbone (`icpt.world.pretraining.run.pretrain`)."""

    output_dir: str = field(default="outputs/world_backbone/export", metadata={"help": "final HF-format model"})
    work_dir: str = field(default="outputs/world_backbone", metadata={"help": "checkpoints, render cache, log"})
    resume: bool = field(default=False, metadata={"help": "continue from the checkpoint in --work-dir"})
    max_minutes: float = field(default=60.0, metadata={"help": "stop (after a checkpoint) after this long"})
    checkpoint_minutes: float = field(default=5.0, metadata={"help": "minutes between checkpoints"})
    threads: int = field(default=2, metadata={"help": "CPU threads for torch"})
    device: str = field(default="cuda" if torch.cuda.is_available() else "cpu", metadata={
        "help": "where the model trains"})
    workers: int = field(default=0, metadata={
        "help": "processes that render and build batches ahead (0: in this process)"})
    init_from: str | None = field(default=None, metadata={
        "help": "an exported backbone folder to start from: its stages 1 and 2 count as done, and the run trains "
                "stage 3 (--question-steps) on it; the model settings must match it"})
    language_model_from: str | None = field(default=None, metadata={
        "help": "an exported backbone folder whose connector and language model stage 2 starts from, instead of "
                "random weights (the tower still comes from this run's stage 1); applied when stage 2 begins, so a "
                "run stopped after stage 1 can take it with --resume; the model settings must match it"})
    seed: int = field(default=0, metadata={"help": "the world's seed, and the training seed"})
    num_identities: int = field(default=1000, metadata={"help": "identities of the generated world"})
    extra_training_identities: int = field(default=0, metadata={
        "help": "identities added to the training split only, in look-alike pairs "
                "(`World(extra_training_identities=)`)"})
    renders_per_identity: int = field(default=48, metadata={"help": "pre-rendered views per training identity"})
    # model
    image_size: int = field(default=64, metadata={"help": "image side in pixels"})
    patch_size: int = field(default=16, metadata={"help": "the vision tower's patch side ((image/patch)^2 tokens per image)"})
    vision_hidden: int = field(default=128, metadata={"help": "the vision tower's hidden size"})
    vision_layers: int = field(default=4, metadata={"help": "the vision tower's layers"})
    text_hidden: int = field(default=256, metadata={"help": "the language model's hidden size"})
    text_layers: int = field(default=4, metadata={"help": "the language model's layers"})
    # stage 1
    contrastive_steps: int = field(default=3000, metadata={"help": "stage 1: steps of the contrastive vision tower"})
    contrastive_identities: int = field(default=32, metadata={"help": "random identities per contrastive batch"})
    contrastive_pairs: int = field(default=8, metadata={"help": "look-alike pairs per contrastive batch"})
    views: int = field(default=4, metadata={"help": "renders per identity in a contrastive batch"})
    contrastive_lr: float = field(default=1e-3, metadata={"help": "stage 1's peak learning rate"})
    temperature: float = field(default=0.1, metadata={"help": "the contrastive loss's temperature"})
    attribute_weight: float = field(default=1.0, metadata={
        "help": "weight of the auxiliary attribute classification in stage 1 (0: off)"})
    # stage 2
    comparison_steps: int = field(default=6000, metadata={
        "help": "stage 2: steps of connector + language model on comparison and descriptions"})
    batch_size: int = field(default=32, metadata={"help": "examples per language step"})
    lr: float = field(default=5e-4, metadata={"help": "peak learning rate of connector + language model"})
    look_alike_fraction: float = field(default=0.25, metadata={"help": "share of look-alike negatives in comparisons"})
    question_steps: int = field(default=1500, metadata={
        "help": "stage 3: steps on named questions (+ comparison and descriptions) with the tower tuned too"})
    tower_lr: float = field(default=1e-4, metadata={"help": "stage 3's peak learning rate for the tower"})
    format_steps: int = field(default=0, metadata={
        "help": "stage 4 (a continuation, e.g. with --init-from): steps teaching the evaluation's answer formats "
                "(labelled questions: recognition, presence, attribute, caption, either/or, VQA with photos in context under "
                "labels) mixed with stage 3's tasks"})
    copy_steps: int = field(default=0, metadata={
        "help": "stage 4's first steps: text-only label copying (`WorldTasks.label_copy`), so that the language model "
                "can write back the labels the labelled questions' answers name"})
    format_tasks: list[str] = field(default_factory=lambda: list(TASKS), metadata={
        "help": "the episode tasks stage 4's labelled questions are drawn from, uniformly; name a task twice to draw "
                "it twice as often"})
    format_tower_lr: float = field(default=0.0, metadata={
        "help": "stage 4's peak learning rate for the tower (0: frozen)"})
    describe_every: int = field(default=3, metadata={"help": "every n-th step is a description step"})
    # evaluation
    eval_every: int = field(default=500, metadata={"help": "steps between held-out evaluations"})
    eval_references: int = field(default=3, metadata={"help": "reference images per evaluation question"})
    eval_limit: int | None = field(default=None, metadata={"help": "identities per evaluation (all when unset)"})
    export_now: bool = field(default=False, metadata={"help": "measure and save the current state, then stop"})
