"""ICPT model side: configuration, projector, concept bank and the wrapper model.

Importing this package registers ICPT with transformers' Auto classes (for the installed
package) and marks the classes for remote code (`trust_remote_code=True` checkpoints).
"""

from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText

from .concept_bank import ConceptBank
from .configuration_icpt import ICPTConfig
from .input_checks import ICPTInputError
from .modeling_icpt import ICPTForConditionalGeneration, ICPTOutput, ICPTPreTrainedModel

AutoConfig.register("icpt", ICPTConfig, exist_ok=True)
AutoModel.register(ICPTConfig, ICPTForConditionalGeneration, exist_ok=True)
AutoModelForImageTextToText.register(ICPTConfig, ICPTForConditionalGeneration, exist_ok=True)
ICPTConfig.register_for_auto_class()
# saved checkpoints name both AutoModel and AutoModelForImageTextToText (save_pretrained adds the first)
ICPTForConditionalGeneration.register_for_auto_class("AutoModelForImageTextToText")

__all__ = ["ConceptBank", "ICPTConfig", "ICPTForConditionalGeneration", "ICPTInputError", "ICPTOutput",
           "ICPTPreTrainedModel"]
