"""Does a projector's rows carry identity? Recognition of held-out identities, paired across projectors.

Two measurements on held-out identities (never used in any training), the same photos for every
projector given, so that differences between projectors are not differences in what they were shown:

1. Identity protocol: for each of `--identities` held-out identities, 3 reference photos (environment
   set A) encoded under a label of the episodes' kind drawn per identity (rows tied to one label would
   read better with it: docs/default_model.md), and the recognition question about `--scenes` new
   scenes that show it and `--scenes` that do not (no look-alike twin); single concept, no other concept
   in the prompt. It isolates what the rows say about one identity.
2. Episodes (`--episodes`, 0 to skip): held-out recognition episodes of `icpt demo`'s kind (1-5 reference
   photos, up to three concepts in the prompt, look-alikes, queries in environment set B too), ICPT
   only, scored by `icpt.evaluation.harness.run_evaluation`.

    python examples/held_out_identities.py --projector icpt/default/projector icpt/default/ablations/icpt_no_identity_targets

Prints, per projector, weighted accuracy (0.5 x positives + 0.5 x negatives) of both, with the mean
number of rows per concept.

The study is `icpt.evaluation.studies.held_out_identities`; this script is its command line.
"""

import sys

from icpt.commands.arguments import ArgumentParser
from icpt.evaluation.studies import HeldOutIdentitiesArguments, held_out_identities


def main(argv=None):
    parser = ArgumentParser(HeldOutIdentitiesArguments, prog="python examples/held_out_identities.py",
                            description=__doc__.split("\n\n")[0])
    (args,) = parser.parse(argv)
    try:
        return held_out_identities(args)
    except ValueError as error:  # settings the study cannot use
        parser.error(str(error))


if __name__ == "__main__":
    main(sys.argv[1:])
