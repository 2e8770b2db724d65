"""Can the frozen language model read a concept from a few prompt rows at all? A per-identity ceiling.

For each of a few held-out identities, `--rows` free rows are trained for that identity alone
(`train_concept_prompts`, the test-time-training routine, backbone frozen) on labelled query scenes:
scenes that show the identity ("Yes") and scenes that do not ("No", never its look-alike twin). They
are then asked the recognition question about new scenes of the same kinds. Nothing is amortized: if
these rows are read as the identity, the language model can take a concept from that many rows, and
a projector that cannot is failing to learn, not hitting a limit of the backbone.

Rows are read back three ways: under the label they were fitted under, alone; under another label,
alone; and under another label beside two other concepts (the other identities' rows, under their own
labels), as in an episode. With `--relabel` every training step asks under a new label
(`train_concept_prompts(..., relabel=...)`, how identity targets are fitted), so the rows cannot lean on
one label.

    python examples/per_identity_rows.py --rows 8 --identities 8
    python examples/per_identity_rows.py --rows 8 --steps 60 --identities 8 --relabel
    python examples/per_identity_rows.py --rows 32 --steps 40

Prints weighted accuracy on the new scenes (0.5 x positives + 0.5 x negatives) of each reading and the
training loss before the first and after the last step, averaged over the identities.

The study is `icpt.evaluation.studies.per_identity_rows`; this script is its command line.
"""

import sys

from icpt.commands.arguments import ArgumentParser
from icpt.evaluation.studies import PerIdentityRowsArguments, per_identity_rows


def main(argv=None):
    parser = ArgumentParser(PerIdentityRowsArguments, prog="python examples/per_identity_rows.py",
                            description=__doc__.split("\n\n")[0])
    (args,) = parser.parse(argv)
    try:
        return per_identity_rows(args)
    except ValueError as error:  # settings the study cannot use
        parser.error(str(error))


if __name__ == "__main__":
    main(sys.argv[1:])
