"""`icpt train`: train an ICPT projector on episodes, with the backbone frozen (`icpt.training.run`).

    icpt train --backbone icpt/default/backbone --output_dir outputs/projector \\
        --max_steps 600 --per_device_train_batch_size 16 --learning_rate 3e-4

Several processes: `accelerate launch ... examples/train_icpt.py ...` (or `accelerate launch -m icpt.commands.train`).
Every option of `transformers.TrainingArguments` is accepted besides ICPT's own (`icpt train --help`).
"""

import logging
import sys

import torch
from transformers import TrainingArguments

from icpt.training.run import ICPTArguments, train

from .arguments import ArgumentParser


def main(argv=None):
    """Parse `argv` into `ICPTArguments` and `TrainingArguments`, train, and return the trainer."""
    parser = ArgumentParser((ICPTArguments, TrainingArguments), prog="icpt train", description=__doc__.split("\n\n")[0])
    args, training_args = parser.parse(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    trainer = train(args, training_args)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # leave the process group before the interpreter exits: a gloo group torn down at exit can abort a process
        # ("terminate called without an active exception", SIGABRT) after its work is done
        trainer.accelerator.wait_for_everyone()
        torch.distributed.destroy_process_group()
    return trainer


if __name__ == "__main__":  # `accelerate launch -m icpt.commands.train ...`
    main(sys.argv[1:])
