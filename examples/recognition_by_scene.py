"""Recognition split by what the query shows: positives, negatives with nothing in view, negatives with something.

A negative of the generated world leaves the asked concept out of the query, so some negatives show an empty
scene and "is anything there?" answers them. The episodes do not record what is in view, but the name alone
through the reader adapter marks it: `name_only_adapted` says "yes" whenever something is there, so a negative
it answers "no" has nothing in view. This script reads `outcomes.jsonl` of `icpt eval` runs on the same
questions, marks the negatives with the first run's `name_only_adapted` answers, and prints per method the
accuracy on each group and d′ = z(positives right) − z(busy negatives wrong), the discrimination between the
asked identity and the others in view, free of any leaning towards "yes" or "no". For each later run, the
change of d′ against the first, with a 95 % bootstrap interval over questions. A second table splits the same
questions into the look-alike ones (a negative shows the asked concept's twin, one detail apart) and the rest, with
the weighted recognition (0.5 x positives + 0.5 x negatives) of each.

    python examples/recognition_by_scene.py outputs/eval
    python examples/recognition_by_scene.py outputs/eval_before outputs/eval_after --methods icpt,raw_references_adapted
"""

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import norm

from icpt.commands.arguments import ArgumentParser
from icpt.evaluation.report import run_file

MARKER = "name_only_adapted"


@dataclass
class SceneArguments:
    runs: list[Path] = field(metadata={"positional": True, "nargs": "+", "type": Path,
                                       "help": "`icpt eval` output folders on the same questions; the first "
                                               "must include name_only_adapted"})
    methods: str | None = field(default=None, metadata={"help": "comma-separated methods (default: all in every run)"})
    resamples: int = field(default=2000, metadata={"help": "bootstrap resamples for the change of d′"})


def recognition_outcomes(run: Path) -> dict[str, dict[str, dict]]:
    """question id -> method -> outcome line, for the recognition questions of one run."""
    path = run_file(run, "outcomes.jsonl")
    outcomes: dict[str, dict[str, dict]] = {}
    for line in path.read_text().splitlines():
        outcome = json.loads(line)
        if outcome["task"] == "recognition":
            outcomes.setdefault(outcome["question_id"], {})[outcome["method"]] = outcome
    return outcomes


def d_prime(correct: np.ndarray, positive: np.ndarray, busy_negative: np.ndarray) -> float:
    """z(hit rate) − z(false-alarm rate on the busy negatives); rates clipped to [0.001, 0.999]."""
    hit = np.clip(correct[positive].mean(), 1e-3, 1 - 1e-3)
    false_alarm = np.clip(1 - correct[busy_negative].mean(), 1e-3, 1 - 1e-3)
    return float(norm.ppf(hit) - norm.ppf(false_alarm))


def main(argv=None) -> int:
    parser = ArgumentParser(SceneArguments, prog="python examples/recognition_by_scene.py",
                            description=__doc__.split("\n\n")[0])
    (args,) = parser.parse(argv)
    runs = [recognition_outcomes(run) for run in args.runs]
    questions = sorted(q for q in runs[0] if MARKER in runs[0][q] and all(q in run for run in runs))
    if not questions:
        raise SystemExit(f"{args.runs[0]} has no recognition question answered by {MARKER}: run `icpt eval` with "
                         f"--methods including {MARKER}.")
    methods = args.methods.split(",") if args.methods else sorted(
        set.intersection(*(set(run[q]) for run in runs for q in questions)))
    missing = [m for m in methods if any(m not in run[q] for run in runs for q in questions)]
    if missing:
        raise SystemExit(f"Not answered on every question of every run: {', '.join(missing)}.")
    positive = np.array([runs[0][q][MARKER]["positive"] for q in questions])
    # a negative answered right is one the name alone said "no" to (as the harness scores it)
    empty = ~positive & np.array([runs[0][q][MARKER]["correct"] for q in questions], dtype=bool)
    busy = ~positive & ~empty
    print(f"{len(questions)} questions: {positive.sum()} positives, {empty.sum()} negatives with nothing in view, "
          f"{busy.sum()} with something in view (marked by {MARKER} of {args.runs[0]})")
    print("| run | method | positives | negatives, nothing in view | negatives, something in view | d′ | d′ − first run |")
    print("|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    draws = [rng.integers(0, len(questions), len(questions)) for _ in range(args.resamples)]
    for method in methods:
        first = np.array([runs[0][q][method]["correct"] for q in questions], dtype=bool)
        for path, run in zip(args.runs, runs):
            correct = np.array([run[q][method]["correct"] for q in questions], dtype=bool)
            change = "–"
            if run is not runs[0]:
                deltas = [d_prime(correct[i], positive[i], busy[i]) - d_prime(first[i], positive[i], busy[i])
                          for i in draws]
                low, high = np.percentile(deltas, [2.5, 97.5])
                change = f"{d_prime(correct, positive, busy) - d_prime(first, positive, busy):+.2f} [{low:+.2f}, {high:+.2f}]"
            print(f"| {path} | {method} | {correct[positive].mean():.3f} | {correct[empty].mean():.3f} | "
                  f"{correct[busy].mean():.3f} | {d_prime(correct, positive, busy):.2f} | {change} |")

    look_alike = np.array(["look_alike" in runs[0][q][MARKER]["splits"] for q in questions])
    print(f"\n{look_alike.sum()} look-alike questions, {(~look_alike).sum()} others")
    print("| run | method | look-alikes: positives / negatives | look-alikes, weighted | others: positives / negatives "
          "| others, weighted |")
    print("|---|---|---|---|---|---|")
    for method in methods:
        for path, run in zip(args.runs, runs):
            correct = np.array([run[q][method]["correct"] for q in questions], dtype=bool)
            cells = []
            for group in (look_alike, ~look_alike):
                hits, rejections = correct[group & positive].mean(), correct[group & ~positive].mean()
                cells += [f"{hits:.3f} / {rejections:.3f}", f"{(hits + rejections) / 2:.3f}"]
            print(f"| {path} | {method} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
