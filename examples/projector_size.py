"""Print the ICPT projector's parameter count against each supported backbone family's.

Backbones are built from their transformers default configurations (which describe the
reference checkpoints, e.g. LlavaConfig() is llava-1.5-7b) on the meta device, so nothing is
allocated or downloaded; the projector uses the default ICPTConfig width.

    python examples/projector_size.py
"""

import torch
from transformers import (
    AutoModelForImageTextToText,
    Idefics3Config,
    InternVLConfig,
    LlavaConfig,
    LlavaNextConfig,
    Qwen2_5_VLConfig,
    Qwen2VLConfig,
    SmolVLMConfig,
)

from modeling_icpt import ICPTConfig
from modeling_icpt.concept_projector import ConceptProjector
from modeling_icpt.reference_features import num_vision_layers, text_hidden_size, vision_hidden_size

CONFIGS = {
    "llava": LlavaConfig,
    "llava_next": LlavaNextConfig,
    "qwen2_vl": Qwen2VLConfig,
    "qwen2_5_vl": Qwen2_5_VLConfig,
    "internvl": InternVLConfig,
    "idefics3": Idefics3Config,
    "smolvlm": SmolVLMConfig,
}


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def main():
    print(f"{'family':12} {'backbone':>15} {'projector':>12} {'share':>8}")
    for family, config_class in CONFIGS.items():
        config = config_class()
        with torch.device("meta"):
            backbone = AutoModelForImageTextToText.from_config(config)
            depth = num_vision_layers(config)
            projector = ConceptProjector(ICPTConfig(text_hidden_size=text_hidden_size(config),
                                                    vision_hidden_size=vision_hidden_size(config),
                                                    vision_layers=[depth // 2, -1]))
        b, p = count(backbone), count(projector)
        print(f"{family:12} {b:>15,} {p:>12,} {100 * p / b:>7.3f}%")


if __name__ == "__main__":
    main()
