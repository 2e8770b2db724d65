"""Do a projector's answers depend on the concept's photos? A check on held-out episodes.

Each recognition or attribute episode is answered twice by the same projector: with the target concept encoded from its own
reference photos, and with the target encoded from the photos of another episode's concept (a
different held-out identity). A projector that personalizes changes many answers and loses accuracy
when the photos are swapped; one that ignores the photos answers the same both times.

    python examples/reference_sensitivity.py --episodes 60
    python examples/reference_sensitivity.py --projector icpt/default/ablations/icpt_no_identity_targets
    python examples/reference_sensitivity.py --task attribute   # "What colour is <bo>?" and the like

Recognition is scored as weighted accuracy (Yo'LLaVA protocol), attribute questions by exact match.

The study is `icpt.evaluation.studies.reference_sensitivity`; this script is its command line.
"""

import sys

from icpt.commands.arguments import ArgumentParser
from icpt.evaluation.studies import ReferenceSensitivityArguments, reference_sensitivity


def main(argv=None):
    parser = ArgumentParser(ReferenceSensitivityArguments, prog="python examples/reference_sensitivity.py",
                            description=__doc__.split("\n\n")[0])
    (args,) = parser.parse(argv)
    try:
        return reference_sensitivity(args)
    except ValueError as error:  # settings the study cannot use
        parser.error(str(error))


if __name__ == "__main__":
    main(sys.argv[1:])
