"""The backbone the cost benchmark measures, with its projector: a saved backbone (the embedded default unless
`--backbone`), or a full-size configuration (LLaVA-1.5-7B, Qwen2.5-VL-7B) with random weights and a tokenizer built
here, so nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, models, pre_tokenizers
from transformers import (
    AutoModelForImageTextToText,
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaProcessor,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2VLImageProcessorPil,
)

from icpt.inference import DEFAULT_BACKBONE, DEFAULT_DIR, DEFAULT_MODEL
from icpt.world.tasks import RECOGNITION_QUESTION
from modeling_icpt import ICPTForConditionalGeneration
from processing_icpt import ICPTProcessor
from processing_icpt.backbone_processing import backbone_processor_config, build_backbone_processor

from .arguments import FULL_SIZE_CONFIGS, CostArguments

# descriptions of the backbone and checkpoint are relative to the checkout that holds the embedded default
CHECKOUT = DEFAULT_DIR.parents[1]


def _local_tokenizer(specials: dict, extra: list, chat_template: str, labels: list[str]):
    """A word-level tokenizer built here (no download): the benchmark's words, its labels and the family's tokens."""
    words = sorted(set(RECOGNITION_QUESTION.replace("{name}", "").lower().replace("?", " ? ").replace(".", " . ").split()))
    named = {k: v for k, v in specials.items() if k in ("bos_token", "eos_token", "pad_token", "unk_token")}
    model_specific = {k: v for k, v in specials.items() if k not in named}
    tokens = list(dict.fromkeys([*named.values(), *model_specific.values(), *extra, *labels, *words, "\n", ":"]))
    backend = Tokenizer(models.WordLevel({token: i for i, token in enumerate(tokens)}, unk_token=named["unk_token"]))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"<[^<>\s]+>|<\|[^|]+\|>|\w+|[^\w\s]|\n"), behavior="isolated")
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, chat_template=chat_template, extra_special_tokens=model_specific, **named
    )


_CONTENT = (
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}IMAGE{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
)


def full_size_backbone(name: str, labels: list[str], num_layers: int | None = None):
    """A full-size configuration (random weights, not yet built), its processor and a local tokenizer.

    `num_layers` keeps every width and cuts the depth of both towers (smoke tests on a CPU).
    Returns `(config, icpt_processor, image_side)`.
    """
    if name == "llava-1.5-7b":
        template = (
            "{% for message in messages %}{% if message['role'] == 'user' %}USER: "
            + _CONTENT.replace("IMAGE", "<image>\n")
            + " {% else %}ASSISTANT: " + _CONTENT.replace("IMAGE", "<image>\n") + "</s>{% endif %}{% endfor %}"
            "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
        )
        specials = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>",
                    "image_token": "<image>"}
        tokenizer = _local_tokenizer(specials, ["USER", "ASSISTANT"], template, labels)
        vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=num_layers or 24,
                                  num_attention_heads=16, image_size=336, patch_size=14, projection_dim=768)
        text = LlamaConfig(vocab_size=32064, hidden_size=4096, intermediate_size=11008,
                           num_hidden_layers=num_layers or 32, num_attention_heads=32, num_key_value_heads=32,
                           max_position_embeddings=4096, rms_norm_eps=1e-5, pad_token_id=tokenizer.pad_token_id,
                           eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
        config = LlavaConfig(vision_config=vision, text_config=text,
                             image_token_index=tokenizer.convert_tokens_to_ids("<image>"), image_seq_length=576,
                             vision_feature_layer=-2, vision_feature_select_strategy="default",
                             projector_hidden_act="gelu")
        image_processor = CLIPImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
        backbone_processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=14,
                                            vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                            chat_template=template)
        settings = backbone_processor_config(backbone_processor)
        image_side = 336
    elif name == "qwen2.5-vl-7b":
        template = (
            "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
            + _CONTENT.replace("IMAGE", "<|vision_start|><|image_pad|><|vision_end|>")
            + "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
        )
        specials = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "unk_token": "<|unk|>",
                    "image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                    "vision_bos_token": "<|vision_start|>", "vision_eos_token": "<|vision_end|>"}
        tokenizer = _local_tokenizer(specials, ["<|im_start|>", "user", "assistant"], template, labels)
        ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in (
            ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
            ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
        text = {"vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944,
                "num_hidden_layers": num_layers or 28, "num_attention_heads": 28, "num_key_value_heads": 4,
                "max_position_embeddings": 128000, "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
                "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
                "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
        depth = num_layers or 32
        vision = {"depth": depth, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                  "out_hidden_size": 3584, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
                  "window_size": 112, "fullatt_block_indexes": [i for i in (7, 15, 23, 31) if i < depth] or [depth - 1]}
        config = Qwen2_5_VLConfig(vision_config=vision, text_config=text, **ids)
        image_processor = Qwen2VLImageProcessorPil(patch_size=14, merge_size=2, temporal_patch_size=2)
        settings = {"processor_class": "Qwen2_5_VLProcessor"}
        backbone_processor = build_backbone_processor(image_processor, tokenizer, settings, chat_template=template)
        settings = backbone_processor_config(backbone_processor)
        image_side = 448
    else:
        raise ValueError(f"Unknown --config {name!r}: choose among {', '.join(FULL_SIZE_CONFIGS)}.")
    processor = ICPTProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=template,
                              backbone_processor_config=settings)
    return config, processor, image_side


def count_parameters(config) -> int:
    """Parameters of the model a config describes, counted on the meta device (nothing allocated)."""
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    return sum(p.numel() for p in model.parameters())


def load(args: CostArguments, labels: list[str]):
    """`(vlm, processor, model, fixed_model, description, image_side, checkpoint)` for the chosen backbone (`checkpoint`:
    the projector's checkpoint, relative to the checkout when inside it, or None for a fresh projector)."""
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.config:
        config, processor, image_side = full_size_backbone(args.config, labels, args.num_layers)
        if device == "cpu" and args.num_layers is None:
            billions = count_parameters(config) / 1e9
            raise ValueError(
                f"--config {args.config} describes a {billions:.2f} B-parameter backbone ({2 * billions:.0f} GB of "
                "weights in bf16): measure it on a GPU. On this machine no GPU is visible, so nothing was allocated. "
                "Omit --config to measure the embedded default on the CPU (or pass --num-layers 1 for a smoke test "
                "of the full-width path)."
            )
        dtype = torch.bfloat16 if device != "cpu" else torch.float32
        torch.manual_seed(args.seed)
        with torch.device(device):
            vlm = AutoModelForImageTextToText.from_config(config, dtype=dtype)
        vlm.eval()
        model = ICPTForConditionalGeneration.from_backbone(vlm, prompt_token_id=processor.prompt_token_id)
        description = f"{args.config} configuration, random weights, {str(dtype).replace('torch.', '')}" + (
            f", {args.num_layers} layer(s) per tower" if args.num_layers else "")
        return vlm, processor, model, None, description, image_side, None
    backbone = Path(args.backbone or DEFAULT_BACKBONE)
    if not (backbone / "config.json").is_file():
        raise FileNotFoundError(
            f"No backbone at {backbone}: pass --backbone PATH, or train the embedded default with "
            "`python examples/pretrain_world_backbone.py`."
        )
    vlm = AutoModelForImageTextToText.from_pretrained(backbone).to(device).eval()
    processor = ICPTProcessor.from_backbone(backbone)
    checkpoint = args.checkpoint or (DEFAULT_MODEL if backbone.resolve() == DEFAULT_BACKBONE.resolve() else None)
    if checkpoint:
        # a backbone object of its own: a reader adapter goes into it, and the plain backbone stays plain
        own = AutoModelForImageTextToText.from_pretrained(backbone).to(device).eval()
        model = ICPTForConditionalGeneration.from_pretrained(checkpoint, backbone=own)
        checkpoint = str(Path(checkpoint).resolve().relative_to(CHECKOUT)) if Path(checkpoint).resolve(
        ).is_relative_to(CHECKOUT) else str(checkpoint)
    else:
        torch.manual_seed(args.seed)
        model = ICPTForConditionalGeneration.from_backbone(vlm, prompt_token_id=processor.prompt_token_id)
        checkpoint = None
    fixed = ICPTForConditionalGeneration.from_pretrained(args.fixed_checkpoint, backbone=vlm) if args.fixed_checkpoint else None
    side = getattr(vlm.config, "vision_config", None)
    image_side = getattr(side, "image_size", None) or 64
    if isinstance(image_side, (list, tuple)):
        image_side = image_side[0]
    inside = backbone.resolve().is_relative_to(CHECKOUT)
    description = str(backbone.resolve().relative_to(CHECKOUT)) if inside else str(backbone)
    return vlm, processor, model.eval(), fixed, description, int(image_side), checkpoint

