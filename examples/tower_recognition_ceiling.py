"""What the frozen vision tower allows for recognition, whatever reads it.

Trains a small verifier on the tower's patch features of a concept's reference photos and of the query photo (the
layers ICPT's projector reads), on recognition episodes of training identities, and scores it on the held-out
recognition questions `icpt eval` asks, with the swap test; with `--compare-run`, paired with that run's methods on
the same questions.

    python examples/tower_recognition_ceiling.py --compare-run outputs/eval --output outputs/tower_ceiling.json
    python examples/tower_recognition_ceiling.py --train-episodes 8000 --epochs 8

About 30 minutes with the defaults on two CPU cores (rendering and encoding 17,200 episodes, then 2,000 steps).
The study is `icpt.evaluation.tower_ceiling.tower_recognition_ceiling`; this script is its command line.
"""

import sys

from icpt.commands.arguments import ArgumentParser
from icpt.evaluation.tower_ceiling import TowerCeilingArguments, tower_recognition_ceiling


def main(argv=None):
    parser = ArgumentParser(TowerCeilingArguments, prog="python examples/tower_recognition_ceiling.py",
                            description=__doc__.split("\n\n")[0])
    (args,) = parser.parse(argv)
    try:
        tower_recognition_ceiling(args)
    except (ValueError, FileNotFoundError) as error:  # settings or a comparison run the study cannot use
        parser.error(str(error))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
