"""The swap test by how alike the two identities are: does a method say "yes" to another identity's photos more
often the more that identity shares with the one in the photo?

The swap test of `icpt eval` asks positive recognition questions again with the photos of the concept the question
names replaced by another held-out identity's, under the same label; `results.json` keeps, per question, both
answers and the descriptions of the identity asked about and of the one whose photos stood behind the label. On the
generated world a description names one identity, so this script looks both up in the world the backbone was
trained on (`world.json` beside its weights), counts the attributes they share (of shape, colour, second colour,
pattern, mark, side and accessory) and prints, per count, how often the answer after the swap was still "yes" and
how often it changed.

    python examples/swap_by_similarity.py outputs/eval
    python examples/swap_by_similarity.py outputs/eval --method raw_references --backbone icpt/default/backbone
"""

import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from icpt.commands.arguments import ArgumentParser
from icpt.evaluation.report import run_file
from icpt.evaluation.scoring import read_yes_no
from icpt.world.world import ATTRIBUTES, world_for


@dataclass
class SwapArguments:
    run: Path = field(metadata={"positional": True, "type": Path, "help": "an `icpt eval` output folder"})
    method: str = field(default="icpt", metadata={"help": "the method of the swap test to read (default: icpt)"})
    backbone: str | None = field(default=None, metadata={
        "help": "the backbone folder whose world.json describes the identities (default: the run's backbone)"})


def shared_attributes(first, second) -> int:
    return sum(getattr(first, attribute) == getattr(second, attribute) for attribute in ATTRIBUTES)


def main(argv=None) -> int:
    parser = ArgumentParser(SwapArguments, prog="python examples/swap_by_similarity.py",
                            description=__doc__.split("\n\n")[0])
    (args,) = parser.parse(argv)
    path = run_file(args.run, "results.json")
    results = json.loads(path.read_text())
    swap = results.get("swap_test", {}).get("methods", {}).get(args.method)
    if not swap or "answers" not in swap:
        raise SystemExit(f"{path} has no swap-test answers of {args.method}: run `icpt eval` with --swap-methods "
                         f"{args.method} (answers are kept since the swap test records whom each question asks about).")
    world = world_for(args.backbone or results["backbone"])
    by_description = {identity.description: identity for identity in world.identities}
    groups = defaultdict(list)
    for answer in swap["answers"]:
        if len(answer["asks_about"]) != 1 or len(answer["photos_of"]) != 1:
            continue  # a question naming several concepts has no one pair to compare
        asked, shown = (by_description.get(answer[key][0]) for key in ("asks_about", "photos_of"))
        if asked is None or shown is None:
            raise SystemExit(f"An identity of {path} is not in the world of {args.backbone or results['backbone']}: "
                             "pass --backbone, the folder of the backbone the run evaluated.")
        before, after = read_yes_no(answer["before"]), read_yes_no(answer["after"])
        groups[shared_attributes(asked, shown)].append((after == "yes", before != after))
    total = sum(len(rows) for rows in groups.values())
    print(f"{total} swapped questions of {args.method} ({args.run}), by the attributes the identity asked about "
          f"shares with the one whose photos stood behind the label (of {len(ATTRIBUTES)})")
    print("| attributes shared | questions | still \"yes\" after the swap | answer changed |")
    print("|---|---|---|---|")
    for count in sorted(groups):
        rows = groups[count]
        print(f"| {count} | {len(rows)} | {sum(y for y, _ in rows) / len(rows):.3f} | "
              f"{sum(c for _, c in rows) / len(rows):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
