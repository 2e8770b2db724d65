"""Cost benchmark: what ICPT costs next to test-time training, raw references in context and the plain backbone.

What it measures (seconds to add a concept, prompt tokens, `generate()` latency and peak memory, and the
many-concept operations), against which baseline and with which targets: the docstring of
`icpt.evaluation.costs`.

```bash
# the embedded default on this CPU: the shipped projector (icpt/default/projector, with its reader adapter,
# on a backbone object of its own) unless --checkpoint is given
python examples/benchmark_costs.py --threads 1 --output outputs/costs.json --markdown docs/performance.md
python examples/benchmark_costs.py --backbone PATH --checkpoint PATH --fixed-checkpoint PATH
# a full-size backbone with random weights in bf16, for a GPU (refused without one)
python examples/benchmark_costs.py --config llava-1.5-7b --output outputs/costs-llava-7b.json
python examples/benchmark_costs.py --config qwen2.5-vl-7b
```
The benchmark is `icpt.evaluation.costs` (`arguments.CostArguments`, `run.benchmark_costs`); this script is its
command line.
"""

import argparse
import sys

from icpt.commands.arguments import ArgumentParser
from icpt.evaluation.costs.arguments import CostArguments
from icpt.evaluation.costs.run import benchmark_costs


def main(argv=None) -> dict:
    parser = ArgumentParser(CostArguments, prog="python examples/benchmark_costs.py",
                            description=__doc__.split("\n\n")[0],
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    argv = sys.argv[1:] if argv is None else argv
    (args,) = parser.parse(argv)
    try:
        return benchmark_costs(args, command="python examples/benchmark_costs.py " + " ".join(argv))
    except ValueError as error:  # settings it cannot measure (a full-size configuration without a GPU, ...)
        sys.exit(str(error))


if __name__ == "__main__":
    main()
