"""`icpt eval`: ICPT, its ablations and the baselines on the same questions and backbone (`icpt.evaluation.harness`).

Regenerate docs/results.md on the embedded default (about 17 minutes on 2 CPU cores):
  icpt eval --preset default --threads 1 --output-dir outputs/eval --write-docs docs/results.md
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from datasets import load_from_disk
from tqdm.contrib.logging import logging_redirect_tqdm

from icpt.data import benchmarks
from icpt.evaluation.checkpoints import (
    CHECKPOINT_METHODS,
    DEFAULT_ABLATIONS_DIR,
    METHODS,
    default_preset,
    inapplicable_ablations,
)
from icpt.evaluation.episodes import (
    DEFAULT_GENERIC_QUESTIONS,
    DEFAULT_MIN_PER_SPLIT,
    DEFAULT_RECOGNITION_QUESTIONS,
    DEFAULT_TASK_QUESTIONS,
    DEFAULT_WORLD_IDENTITIES,
    DEFAULT_WORLD_SEED,
    world_episodes,
)
from icpt.evaluation.harness import (
    CEILING_MARGIN,
    DEFAULT_REFERENCE_COUNTS,
    DEFAULT_SWAP_METHODS,
    DEFAULT_SWAP_QUESTIONS,
    DEFAULT_SWEEP_METHODS,
    DEFAULT_SWEEP_QUESTIONS,
    DEFAULT_TTT_QUESTIONS,
    run_evaluation,
)
from icpt.evaluation.methods import DEFAULT_MAX_NEW_TOKENS
from icpt.evaluation.report import write_docs
from icpt.evaluation.scoring import render_markdown
from icpt.training.prompt_fitting import TEST_TIME_TRAINING_LEARNING_RATE, TEST_TIME_TRAINING_STEPS

from .arguments import ArgumentParser

BENCHMARKS = {"yollava": benchmarks.load_yollava, "myvlm": benchmarks.load_myvlm, "mc_llava": benchmarks.load_mc_llava,
              "rap": benchmarks.load_rap}


def checkpoint_option(text: str) -> tuple[str, str]:
    """`--checkpoint METHOD=PATH` -> (method, path)."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--checkpoint takes METHOD=PATH (e.g. icpt=outputs/projector), got {text!r}.")
    method, path = text.split("=", 1)
    if method not in CHECKPOINT_METHODS:
        raise argparse.ArgumentTypeError(f"--checkpoint: unknown method {method!r}; choose among {CHECKPOINT_METHODS}.")
    return method, path


def methods_option(text: str) -> list[str]:
    """`--methods a,b` or `all` -> the list of methods."""
    if text == "all":
        return list(METHODS)
    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise argparse.ArgumentTypeError(f"Unknown methods {unknown}; choose among {', '.join(METHODS)} (or 'all').")
    return methods


@dataclass
class ModelsArguments:
    _argument_group_name = "models"
    preset: Literal["default"] | None = field(default=None, metadata={"help": "the embedded default backbone and its projectors"})
    ablations_dir: str = field(default=str(DEFAULT_ABLATIONS_DIR), metadata={
        "help": f"with --preset: where the ablation projectors are, one folder per method (default: {DEFAULT_ABLATIONS_DIR})"})
    checkpoint: list[tuple[str, str]] = field(default_factory=list, metadata={
        "action": "append", "type": checkpoint_option, "metavar": "METHOD=PATH",
        "help": f"an ICPT checkpoint for one of {', '.join(CHECKPOINT_METHODS)} (repeatable; overrides the preset's)"})
    backbone: str | None = field(default=None, metadata={"help": "the frozen backbone (default: the one the checkpoints name)"})
    methods: list[str] | None = field(default=None, metadata={
        "type": methods_option,
        "help": "comma-separated methods, or 'all' (default: all; with --preset, all that apply to its projector)"})


@dataclass
class DataArguments:
    _argument_group_name = "data (default: the generated world's held-out episodes)"
    episodes: str | None = field(default=None, metadata={"help": "an episode dataset folder written by Dataset.save_to_disk"})
    benchmark: Literal["yollava", "myvlm", "mc_llava", "rap"] | None = field(default=None, metadata={
        "help": "a public benchmark's layout"})
    benchmark_root: str | None = field(default=None, metadata={"help": "the local copy of --benchmark"})
    world_seed: int = field(default=DEFAULT_WORLD_SEED, metadata={
        "help": f"seed of the generated world (default: {DEFAULT_WORLD_SEED}, the default backbone's)"})
    world_identities: int = field(default=DEFAULT_WORLD_IDENTITIES, metadata={
        "help": f"identities of the generated world (default: {DEFAULT_WORLD_IDENTITIES}, the default backbone's)"})
    recognition_questions: int = field(default=DEFAULT_RECOGNITION_QUESTIONS, metadata={
        "help": f"world: recognition questions, half positive (default: {DEFAULT_RECOGNITION_QUESTIONS})"})
    min_per_split: int = field(default=DEFAULT_MIN_PER_SPLIT, metadata={
        "help": f"world: at least this many recognition questions per split (default: {DEFAULT_MIN_PER_SPLIT})"})
    task_questions: int = field(default=DEFAULT_TASK_QUESTIONS, metadata={
        "help": f"world: questions of each other task (default: {DEFAULT_TASK_QUESTIONS})"})
    generic_questions: int = field(default=DEFAULT_GENERIC_QUESTIONS, metadata={
        "help": f"world: generic questions without concepts (default: {DEFAULT_GENERIC_QUESTIONS})"})
    world_split: Literal["environment_shift", "look_alike", "multi_concept"] | None = field(default=None, metadata={
        "help": "world: only the recognition questions of this split, the same ones a run without it asks there (to "
                "spend test-time training's subsample on one split; where the split's ceiling lies below the bar, as "
                "the look-alikes' does, add --ceiling-margin -1 to ask the other methods anyway)"})
    num_episodes: int | None = field(default=None, metadata={"help": "--episodes/--benchmark: at most this many (default: all)"})
    num_references: int | None = field(default=None, metadata={"help": "at most this many references per concept (default: all)"})


@dataclass
class RunArguments:
    _argument_group_name = "run"
    seeds: list[int] = field(default_factory=lambda: [0], metadata={"help": "episode draws, pooled (default: 0)"})
    reference_counts: list[int] = field(default_factory=lambda: list(DEFAULT_REFERENCE_COUNTS), metadata={
        "nargs": "*", "type": int, "help": "k of the reference sweep (default: 1 3 5; none: no sweep)"})
    sweep_methods: list[str] | None = field(default=None, metadata={
        "type": methods_option, "help": f"methods of the reference sweep (default: {', '.join(DEFAULT_SWEEP_METHODS)})"})
    sweep_questions: int = field(default=DEFAULT_SWEEP_QUESTIONS, metadata={
        "help": f"recognition questions of the sweep (default: {DEFAULT_SWEEP_QUESTIONS})"})
    swap_methods: list[str] | None = field(default=None, metadata={
        "type": methods_option, "help": f"methods of the swap test (default: {', '.join(DEFAULT_SWAP_METHODS)})"})
    swap_questions: int = field(default=DEFAULT_SWAP_QUESTIONS, metadata={
        "help": f"positive recognition questions of the swap test (default: {DEFAULT_SWAP_QUESTIONS}; 0: none)"})
    ttt_questions: int = field(default=DEFAULT_TTT_QUESTIONS, metadata={
        "help": f"questions test-time training answers, a random subsample (default: {DEFAULT_TTT_QUESTIONS})"})
    ttt_steps: int = field(default=TEST_TIME_TRAINING_STEPS, metadata={
        "help": f"test-time-training steps per concept (default: {TEST_TIME_TRAINING_STEPS}, as train_concept_prompts "
                "and the cost benchmark, so that its accuracy and its time to add a concept are of one setting)"})
    ttt_learning_rate: float = field(default=TEST_TIME_TRAINING_LEARNING_RATE, metadata={
        "help": f"Adam step relative to the size of an embedding entry (default: {TEST_TIME_TRAINING_LEARNING_RATE})"})
    ttt_negatives: int = field(default=8, metadata={"help": "negative photos per concept (default: 8)"})
    ceiling_margin: float = field(default=CEILING_MARGIN, metadata={
        "help": "a task is measurable when the photos in context beat chance by this much, with 95 %% "
                f"confidence (default: {CEILING_MARGIN})"})
    max_new_tokens: int | None = field(default=None, metadata={
        "help": "at most this many new tokens for any task (default: per task, enough for its answers)"})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, ... (default: cuda when available)"})
    threads: int | None = field(default=None, metadata={
        "help": "CPU threads for torch (on a shared machine, 1 avoids spinning threads)"})


@dataclass
class OutputArguments:
    _argument_group_name = "output"
    output_dir: str = field(default="outputs/eval", metadata={"help": "(default: outputs/eval)"})
    write_docs: str | None = field(default=None, metadata={
        "metavar": "PATH", "help": "also write the results page here (e.g. docs/results.md)"})
    quiet: bool = field(default=False, metadata={"help": "no progress bar or lines"})


def build_parser() -> ArgumentParser:
    return ArgumentParser(
        (ModelsArguments, DataArguments, RunArguments, OutputArguments), prog="icpt eval",
        description="Evaluate ICPT, its ablations and the baselines on the same questions and backbone; write "
                    "results.json, outcomes.jsonl, results.md and plots.",
        epilog=__doc__.split("\n\n", 1)[1])


def load_data(data: DataArguments):
    """The episodes to evaluate and their description: a saved dataset, a benchmark, or the generated world."""
    if data.benchmark and not data.benchmark_root:
        raise ValueError(f"--benchmark {data.benchmark} needs --benchmark-root DIR (the local copy of the benchmark).")
    if data.episodes and data.benchmark:
        raise ValueError("Pass --episodes or --benchmark, not both.")
    if data.world_split and (data.episodes or data.benchmark):
        raise ValueError("--world-split applies to the generated world, not to --episodes/--benchmark.")
    if data.episodes:
        if not Path(data.episodes).is_dir():
            raise FileNotFoundError(f"No episode dataset at {data.episodes}: write one with Dataset.save_to_disk.")
        return load_from_disk(data.episodes), f"episodes from {data.episodes}"
    if data.benchmark:
        return BENCHMARKS[data.benchmark](data.benchmark_root), f"{data.benchmark} from {data.benchmark_root}"
    if data.num_episodes is not None:
        raise ValueError("--num-episodes applies to --episodes/--benchmark; the world takes --recognition-questions "
                         "and --task-questions.")
    episodes = world_episodes(data.world_seed, data.world_identities, data.recognition_questions, data.min_per_split,
                              data.task_questions, data.generic_questions, split=data.world_split)
    return episodes, episodes.description


def main(argv=None) -> int:
    """`icpt eval`: parse the arguments, run the evaluation, write the outputs; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    models, data, run, output = build_parser().parse(argv)
    if not logging.getLogger().handlers:  # the command line's progress lines, timestamped, between the bar's updates
        logging.basicConfig(level=logging.INFO, format="[icpt eval %(asctime)s] %(message)s", datefmt="%H:%M:%S")
    if run.threads:
        torch.set_num_threads(run.threads)
    checkpoints = dict(models.checkpoint)
    backbone, methods, notes = models.backbone, models.methods, []
    if models.preset == "default":
        preset_backbone, preset_checkpoints, notes = default_preset(models.ablations_dir)
        backbone = backbone or str(preset_backbone)
        checkpoints = {**{m: str(p) for m, p in preset_checkpoints.items()}, **checkpoints}
        if methods is None:  # of each pair of ablations (off / on), only the one that changes the projector applies
            skip = inapplicable_ablations(preset_checkpoints["icpt"])
            methods = [m for m in METHODS if m not in skip]
    episodes, description = load_data(data)

    with logging_redirect_tqdm():  # log lines above the progress bar, not through it
        results = run_evaluation(
            episodes,
            checkpoints=checkpoints,
            backbone=backbone,
            methods=methods,
            seeds=run.seeds,
            num_episodes=data.num_episodes,
            num_references=data.num_references,
            reference_counts=run.reference_counts,
            sweep_methods=run.sweep_methods,
            sweep_questions=run.sweep_questions,
            swap_methods=run.swap_methods,
            swap_questions=run.swap_questions,
            ttt_questions=run.ttt_questions,
            ttt_steps=run.ttt_steps,
            ttt_learning_rate=run.ttt_learning_rate,
            ttt_negatives=run.ttt_negatives,
            ceiling_margin=run.ceiling_margin,
            max_new_tokens=(None if run.max_new_tokens is None
                            else {task: min(n, run.max_new_tokens) for task, n in DEFAULT_MAX_NEW_TOKENS.items()}),
            device=run.device,
            output_dir=output.output_dir,
            data_description=description,
            command=" ".join(["icpt eval", *map(shlex.quote, argv)]),
            progress=not output.quiet,
        )
    if output.write_docs:
        write_docs(results, output.output_dir, output.write_docs)
    for note in notes:
        print(f"note: a projector of the preset is missing; train it with: {note}", file=sys.stderr)
    print(render_markdown(results))
    print(f"\nWrote {Path(output.output_dir) / 'results.json'}, outcomes.jsonl, results.md and plots"
          + (f"; and {output.write_docs}" if output.write_docs else "")
          + f". Wall time: {results['wall_seconds'] / 60:.1f} minutes.")
    return 0
