"""`icpt train`: train an ICPT projector on episodes, with the backbone frozen (`icpt.training.run`).

    icpt train --backbone icpt/default/backbone --output_dir outputs/projector \\
        --max_steps 600 --per_device_train_batch_size 16 --learning_rate 3e-4

Several processes: `accelerate launch ... examples/train_icpt.py ...` (or `accelerate launch -m icpt.commands.train`).
Every option of `transformers.TrainingArguments` is accepted besides ICPT's own (`icpt train --help`).
"""

import gc
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
        leave_process_group(trainer)
    return trainer


def leave_process_group(trainer) -> None:
    """Tear the process group down while the interpreter is whole, in the one order that cannot hang.

    A gloo group torn down at exit can abort a process ("terminate called without an active exception") after its
    work is done, so it is destroyed here. Before that, DDP's wrapper is dropped: its reducer holds the group too,
    and when the reducer's deallocation drops the group's last reference it joins gloo's threads while holding the
    GIL, which deadlocks whenever one of them still needs the GIL to free a finished collective's tensors (seen as an
    intermittent hang after the last checkpoint). Dropped first, the reducer leaves the group to
    `destroy_process_group`, whose deallocation releases the GIL before it joins.
    """
    trainer.accelerator.wait_for_everyone()
    trainer.model_wrapped = trainer.model
    trainer.accelerator.free_memory()  # the accelerator's references to the wrapped model, optimizer and loaders
    gc.collect()  # the wrapper sits in reference cycles: free it now, not at a later collection
    torch.distributed.destroy_process_group()


if __name__ == "__main__":  # `accelerate launch -m icpt.commands.train ...`
    main(sys.argv[1:])
