"""The cost benchmark's settings: `CostArguments` (its field order is the order of the report's settings), the
full-size configurations it knows, the bank sizes it measures by default."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields

from icpt.inference import DEFAULT_BACKBONE
from icpt.training.prompt_fitting import TEST_TIME_TRAINING_LEARNING_RATE, TEST_TIME_TRAINING_STEPS

FULL_SIZE_CONFIGS = ("llava-1.5-7b", "qwen2.5-vl-7b")
BANK_SIZES = (100, 1_000, 10_000, 100_000)


def parse_sizes(text: str) -> tuple[int, ...]:
    """`--bank-sizes 100,1000`: sorted distinct positive sizes."""
    try:
        sizes = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--bank-sizes takes comma-separated integers, got {text!r}") from None
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError(f"--bank-sizes must be positive, got {text!r}")
    return sizes


@dataclass
class CostArguments:
    """What the cost benchmark measures, on which backbone. The field order is the order of the report's settings."""

    backbone: str | None = field(default=None, metadata={
        "help": f"a saved backbone folder (default: the embedded default, {DEFAULT_BACKBONE})"})
    config: str | None = field(default=None, metadata={"choices": FULL_SIZE_CONFIGS,
                               "help": "a full-size configuration with random weights in bf16 (needs a GPU)"})
    checkpoint: str | None = field(default=None, metadata={
        "help": "an ICPT projector checkpoint (default: a fresh projector)"})
    fixed_checkpoint: str | None = field(default=None, metadata={
        "help": "the fixed-length ablation's checkpoint, for its token count"})
    num_layers: int | None = field(default=None, metadata={
        "help": "with --config: keep the widths, use this many layers per tower (a smoke test)"})
    num_concepts: int = field(default=16, metadata={"help": "concepts encoded (k goes up to 16)"})
    references: int = field(default=3, metadata={"help": "reference photos per concept"})
    add_repeats: int = field(default=5, metadata={"help": "concepts timed for the ICPT forward"})
    ttt_steps: int = field(default=TEST_TIME_TRAINING_STEPS, metadata={
        "help": "test-time-training steps (the harness's default)"})
    ttt_learning_rate: float = field(default=TEST_TIME_TRAINING_LEARNING_RATE, metadata={
        "help": "relative to the size of an embedding entry (the harness's default)"})
    ttt_negatives: int = field(default=8, metadata={"help": "negative scenes of test-time training"})
    new_tokens: int = field(default=16, metadata={"help": "tokens every generate() call produces"})
    repeats: int = field(default=31, metadata={
        "help": "timed generate() calls per variant, interleaved (median); on a shared 2-core CPU the 1- and "
                "4-concept ratios still move by about 0.05 between runs (1.04-1.11 with 31, 1.07-1.20 with 7)"})
    device: str | None = field(default=None, metadata={"help": "default: cuda when available"})
    threads: int | None = field(default=None, metadata={"help": "CPU threads for torch"})
    seed: int = field(default=0, metadata={"help": "seed of the photos and of a fresh projector"})
    output: str | None = field(default=None, metadata={"help": "write the measurements here as JSON"})
    bank_sizes: tuple[int, ...] = field(default=BANK_SIZES, metadata={
        "type": parse_sizes, "help": "bank sizes to measure, comma-separated (many concepts, issue 22)"})
    bank_changes: int = field(default=100, metadata={"help": "concepts added, then removed, per bank size"})
    batch_rows: int = field(default=32, metadata={"help": "rows of the batched generate()"})
    retrieval_concepts: int = field(default=200, metadata={"help": "held-out identities in the recall bank"})
    retrieval_queries: int = field(default=200, metadata={"help": "query scenes per kind (recall)"})
    markdown: str | None = field(default=None, metadata={
        "help": "write the report as Markdown here (docs/performance.md)"})
    plots: str | None = field(default=None, metadata={
        "help": "folder for the plot of cost against bank size (docs/performance_plots)"})
    skip_many_concepts: bool = field(default=False, metadata={
        "help": "measure only the costs of a few concepts (no bank sizes, retrieval or batching)"})


def as_options(args: CostArguments) -> list[str]:
    """The options that differ from the defaults, as a command line."""
    options = []
    for setting in fields(args):
        value = getattr(args, setting.name)
        if value == setting.default or (value is False):
            continue
        flag = "--" + setting.name.replace("_", "-")
        if value is True:
            options.append(flag)
        else:
            options += [flag, ",".join(map(str, value)) if isinstance(value, tuple) else str(value)]
    return options

