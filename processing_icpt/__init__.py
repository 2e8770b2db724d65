"""ICPT processor side. Importing this package registers `ICPTProcessor` with `AutoProcessor`."""

from transformers import AutoProcessor

from modeling_icpt.configuration_icpt import ICPTConfig
from processing_icpt.processing_icpt import ICPTInputError, ICPTProcessor, load_image

AutoProcessor.register(ICPTConfig, ICPTProcessor, exist_ok=True)
ICPTProcessor.register_for_auto_class("AutoProcessor")

__all__ = ["ICPTInputError", "ICPTProcessor", "load_image"]
