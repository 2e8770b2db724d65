"""How many prompt rows does a concept need? A training-free reference point on the embedded default.

Each concept's rows are the backbone's own image tokens of its reference photos (what the language
model reads for a photo), pooled over the square patch grid to the `--rows` asked for (the grid's own
size keeps every token): averaged over the references first (`--layout mean`), or pooled photo by
photo and concatenated (`--layout per-reference`: rows x references rows per concept). They go where
ICPT's rows go ("<bo> is <icpt>...<icpt>."), and the frozen backbone answers held-out recognition
episodes -- the episodes `icpt demo` scores. No projector is involved: this measures what the language
model can read from that many rows of photo content.

    python examples/pooled_image_tokens.py --episodes 60 --rows 1 4 16 64
    python examples/pooled_image_tokens.py --task attribute --rows 4
    python examples/pooled_image_tokens.py --episodes 150 --layout per-reference --target-only --skip-look-alikes

Prints, per number of rows, weighted recognition accuracy (Yo'LLaVA protocol) or, with
`--task attribute`, exact-match accuracy on attribute questions ("What colour is <bo>?").

The study is `icpt.evaluation.studies.pooled_image_tokens`; this script is its command line.
"""

import sys

from icpt.commands.arguments import ArgumentParser
from icpt.evaluation.studies import PooledTokensArguments, pooled_image_tokens


def main(argv=None):
    parser = ArgumentParser(PooledTokensArguments, prog="python examples/pooled_image_tokens.py",
                            description=__doc__.split("\n\n")[0])
    (args,) = parser.parse(argv)
    try:
        return pooled_image_tokens(args)
    except ValueError as error:  # settings the study cannot use
        parser.error(str(error))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
