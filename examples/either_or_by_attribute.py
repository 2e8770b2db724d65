"""Text either/or questions by the attribute they ask about: which of a concept's attributes does each method get
right when asked "Is <bo> pink or orange?", "Does <bo> have a dot or a bar?", "Is the mark of <bo> on the left or
on the right?"?

`icpt eval` keeps every answer in `outcomes.jsonl` of its output folder; on the generated world a text either/or
question asks about one of an identity's seven attributes (shape, colour, second colour, pattern, mark, side,
accessory), which its wording and right answer tell (`icpt.world.tasks.either_or_attribute`). This script prints,
per attribute and method, the share of those questions answered right (chance: 0.5).

    python examples/either_or_by_attribute.py outputs/eval
    python examples/either_or_by_attribute.py outputs/eval --methods icpt,raw_references,name_only
"""

import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from icpt.commands.arguments import ArgumentParser
from icpt.evaluation.report import run_file
from icpt.world.tasks import TEXT_QA_QUESTIONS, either_or_attribute


@dataclass
class AttributeArguments:
    run: Path = field(metadata={"positional": True, "type": Path, "help": "an `icpt eval` output folder"})
    methods: str | None = field(default=None, metadata={
        "help": "comma-separated methods to show (default: every method that answered text either/or questions)"})


def main(argv=None) -> int:
    parser = ArgumentParser(AttributeArguments, prog="python examples/either_or_by_attribute.py",
                            description=__doc__.split("\n\n")[0])
    (args,) = parser.parse(argv)
    path = run_file(args.run, "outcomes.jsonl")
    scores = defaultdict(lambda: defaultdict(list))  # method -> attribute -> scores
    for line in path.read_text().splitlines():
        outcome = json.loads(line)
        if outcome["task"] != "text_qa":
            continue
        attribute = either_or_attribute(outcome["question"], outcome["answer"])
        if attribute is None:
            raise SystemExit(f"A text either/or question of {path} is not one of the world's wordings: "
                             f"{outcome['question']!r}. This script reads runs on the generated world.")
        scores[outcome["method"]][attribute].append(outcome["score"])
    methods = args.methods.split(",") if args.methods else list(scores)
    missing = [method for method in methods if method not in scores]
    if not scores or missing:
        raise SystemExit(f"{path} has no text either/or answers of {', '.join(missing) or 'any method'} "
                         f"(methods with some: {', '.join(scores) or 'none'}).")
    attributes = [a for a in TEXT_QA_QUESTIONS if any(scores[m][a] for m in methods)]
    print(f"Text either/or questions of {args.run} by the attribute asked (share answered right; chance 0.5)")
    print("| attribute | questions | " + " | ".join(methods) + " |")
    print("|---|---|" + "---|" * len(methods))
    for attribute in [*attributes, "all"]:
        cells = []
        for method in methods:
            values = (sum(scores[method].values(), []) if attribute == "all" else scores[method][attribute])
            cells.append(f"{sum(values) / len(values):.2f}" if values else "–")
        count = max(len(sum(scores[m].values(), [])) if attribute == "all" else len(scores[m][attribute])
                    for m in methods)
        print(f"| {attribute} | {count} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
