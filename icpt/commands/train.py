"""`icpt train`: train an ICPT projector on episodes, with the backbone frozen (`icpt.training.run`).

    icpt train --backbone icpt/default/backbone --output_dir outputs/projector \\
        --max_steps 600 --per_device_train_batch_size 16 --learning_rate 3e-4

Several processes: `accelerate launch ... examples/train_icpt.py ...` (or `accelerate launch -m icpt.commands.train`).
Every option of `transformers.TrainingArguments` is accepted besides ICPT's own (`icpt train --help`).
"""

import logging
import sys

from transformers import TrainingArguments

from icpt.training.run import ICPTArguments, train

from .arguments import ArgumentParser


def main(argv=None):
    """Parse `argv` into `ICPTArguments` and `TrainingArguments`, train, and return the trainer."""
    parser = ArgumentParser((ICPTArguments, TrainingArguments), prog="icpt train", description=__doc__.split("\n\n")[0])
    args, training_args = parser.parse(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    return train(args, training_args)


if __name__ == "__main__":  # `accelerate launch -m icpt.commands.train ...`
    main(sys.argv[1:])
