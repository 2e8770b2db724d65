"""ICPT processor side. Importing this package registers `ICPTProcessor` with `AutoProcessor`."""

import sys

from transformers import AutoProcessor

import modeling_icpt.input_checks
from modeling_icpt.configuration_icpt import ICPTConfig

# one ICPTInputError for the model and the processor: `processing_icpt/input_checks.py` links to the model's file
# (what remote code copies), and here the installed package imports that file once, under both names
sys.modules.setdefault("processing_icpt.input_checks", modeling_icpt.input_checks)

from processing_icpt.image_io import load_image  # noqa: E402
from processing_icpt.processing_icpt import ICPTInputError, ICPTProcessor  # noqa: E402

AutoProcessor.register(ICPTConfig, ICPTProcessor, exist_ok=True)
ICPTProcessor.register_for_auto_class("AutoProcessor")

__all__ = ["ICPTInputError", "ICPTProcessor", "load_image"]
