"""Paired differences between two runs of `icpt eval` on the same questions (e.g. two backbones).

`icpt eval` pairs methods within one run; a change of backbone needs two runs. With the same world, seeds and
question counts both runs ask the same questions (`question_id` matches), so each method present in both
gets, per task metric, the difference `after - before` on the shared questions with its bootstrap interval
and permutation p-value (`icpt.evaluation.scoring.compare_runs`).

    python examples/compare_evaluations.py outputs/eval_before outputs/eval_after
    python examples/compare_evaluations.py before after --methods raw_references --split look_alike
"""

import sys
from dataclasses import dataclass, field
from pathlib import Path

from icpt.commands.arguments import ArgumentParser
from icpt.evaluation.scoring import SPLITS, compare_runs, format_difference, format_value


@dataclass
class CompareArguments:
    before: Path = field(metadata={"positional": True, "type": Path, "help": "an `icpt eval` output folder"})
    after: Path = field(metadata={"positional": True, "type": Path, "help": "another, on the same questions"})
    methods: str | None = field(default=None, metadata={"help": "comma-separated methods (default: all in both)"})
    split: str = field(default="all", metadata={"choices": SPLITS, "help": "the split the differences are taken on"})


def main(argv=None) -> int:
    parser = ArgumentParser(CompareArguments, prog="python examples/compare_evaluations.py",
                            description=__doc__.split("\n\n")[0])
    (args,) = parser.parse(argv)
    rows = compare_runs(args.before, args.after, args.methods.split(",") if args.methods else None, args.split)
    print(f"| method | metric | {args.before} | {args.after} | after − before |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['method']} | {row['metric']} | {format_value(row['before'])} | {format_value(row['after'])} "
              f"| {format_difference(row['difference'])} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
