"""Training helpers of the tests: interrupting a run at a given step, as a crash would; a trained-looking reader
adapter."""

from contextlib import contextmanager

import torch
from transformers import TrainerCallback

from icpt.training import run


class StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True
            control.should_save = True


@contextmanager
def training_stops_at(step):
    """Every run of `icpt.training.run.train` inside stops (and saves) after `step` steps, as an interrupted run would."""
    original = run.ICPTTrainer.__init__

    def interrupted_init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.add_callback(StopAt(step))

    run.ICPTTrainer.__init__ = interrupted_init
    try:
        yield
    finally:
        run.ICPTTrainer.__init__ = original


def random_reader_adapter(model, seed):
    """Gives `model`'s reader adapter random weights (LoRA's B starts at zero), so that it changes the answers."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ".lora_B." in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
