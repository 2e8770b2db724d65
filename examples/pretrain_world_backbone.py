"""Pretrain ICPT's embedded default backbone: a small LLaVA on the generated world, on a CPU or a GPU.

The recipe is the library `icpt.world.pretraining` (its docstring tells the stages); this script parses the
options (`PretrainArguments`) and runs one sitting. Resumable, within a wall-clock budget:

```bash
python examples/pretrain_world_backbone.py --threads 2 --max-minutes 60            # first sitting
python examples/pretrain_world_backbone.py --threads 2 --max-minutes 60 --resume   # later ones
python examples/pretrain_world_backbone.py --init-from icpt/default/backbone --patch-size 8 --question-steps 500
```

On a GPU (``--device cuda``, the default when one is present) ``--workers N`` builds the batches in N processes;
``scripts/pretrain_backbone_gpu.sh`` is the run that trained the shipped backbone (patch 8). It saves to
``icpt/default/backbone`` unless ``--output-dir`` says otherwise.
"""

import argparse
import os
import sys

# Measured here: with other jobs on the same 2 cores, OpenMP's default spin-waiting made 2-thread
# steps 8-10x slower than 1 thread; passive waiting removes that collapse. Set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from icpt.commands.arguments import ArgumentParser  # noqa: E402
from icpt.inference import DEFAULT_BACKBONE  # noqa: E402
from icpt.world.pretraining.arguments import PretrainArguments  # noqa: E402
from icpt.world.pretraining.run import pretrain  # noqa: E402

# where this checkout keeps the run's checkpoints, render cache and log
WORK_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "outputs", "world_backbone")


def main(argv=None) -> dict:
    parser = ArgumentParser(PretrainArguments, prog="python examples/pretrain_world_backbone.py",
                            description=__doc__.split("\n\n")[0],
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.set_defaults(output_dir=str(DEFAULT_BACKBONE), work_dir=WORK_DIR)
    (args,) = parser.parse(argv)
    return pretrain(args)


if __name__ == "__main__":
    main(sys.argv[1:])
