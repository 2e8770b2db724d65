"""Tiny random-weight backbones of the seven supported VLM families, built offline for tests.

Each backbone is built the way transformers tests its own models: a config with a few small layers, random
weights, a tokenizer trained locally with the `tokenizers` library on a small English corpus (plus the family's
special tokens), a chat template and the family's PIL image processor. Nothing is downloaded.

Example:

```python
>>> from transformers import AutoModelForImageTextToText
>>> from helpers.tiny_backbones import build_tiny_backbone
>>> path = build_tiny_backbone("qwen2_vl", "/tmp/tiny-qwen2-vl")
>>> model = AutoModelForImageTextToText.from_pretrained(path)
>>> model.config.model_type
'qwen2_vl'
```
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForImageTextToText,
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    GenerationConfig,
    GotOcr2ImageProcessorPil,
    Idefics3Config,
    Idefics3ImageProcessorPil,
    Idefics3VisionConfig,
    InternVLConfig,
    InternVLVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaNextConfig,
    LlavaNextImageProcessorPil,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2Config,
    Qwen2VLConfig,
    Qwen2VLImageProcessorPil,
    SmolVLMConfig,
    SmolVLMImageProcessorPil,
    SmolVLMVisionConfig,
)


FAMILIES = ("llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "internvl", "idefics3", "smolvlm")

# What a user message puts in its text for one image, per family (what the family's chat template writes).
IMAGE_PLACEHOLDERS = {
    "llava": "<image>",
    "llava_next": "<image>",
    "qwen2_vl": "<|vision_start|><|image_pad|><|vision_end|>",
    "qwen2_5_vl": "<|vision_start|><|image_pad|><|vision_end|>",
    "internvl": "<IMG_CONTEXT>",
    "idefics3": "<image>",
    "smolvlm": "<image>",
}

# Small English corpus for the tokenizer: enough merges for common words, nothing more.
_CORPUS = [
    "A photo of a dog sitting on the grass next to a red ball.",
    "Is the dog in this photo? Yes. No. Answer with a single word or phrase.",
    "The cat is sleeping on a blue chair near the window.",
    "What is next to the mug? A book, a lamp and a plant are on the table.",
    "Describe the image. The person is holding a cup of coffee in the kitchen.",
    "The capital of France is Paris. The capital of Italy is Rome.",
    "My dog likes to run in the park with other dogs and people.",
    "There is a white car, a black bike and a green tree in the street.",
    "Can you see the toy in this picture? It is small, round and yellow.",
    "Which of them are present? Both of them are here, one on the left and one on the right.",
    "The rocket stands on the launch pad under a clear sky.",
    "An astronaut in a white suit smiles in front of a flag.",
]

_TEXT_HIDDEN = 32
_VISION_HIDDEN = 32
_VOCAB_TARGET = 384  # byte-level alphabet (256) + merges + special tokens


def _small_text_kwargs(vocab_size: int, bos_id: int, eos_id: int, pad_id: int) -> dict:
    return {
        "vocab_size": vocab_size,
        "hidden_size": _TEXT_HIDDEN,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 1024,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "pad_token_id": pad_id,
    }


def _small_vision_kwargs() -> dict:
    return {
        "hidden_size": _VISION_HIDDEN,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
    }


# Special tokens per family: the named ones (bos/eos/pad/unk) and the extra ones, with the attribute names the
# family's processor reads from the tokenizer (e.g. `tokenizer.context_image_token` for InternVL).
def _special_tokens(family: str) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """Returns (named special tokens, model-specific named extra tokens, other extra tokens)."""
    if family in ("llava", "llava_next"):
        return (
            {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"},
            {"image_token": "<image>"},
            [],
        )
    if family in ("qwen2_vl", "qwen2_5_vl"):
        return (
            {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
            {
                "image_token": "<|image_pad|>",
                "video_token": "<|video_pad|>",
                "vision_bos_token": "<|vision_start|>",
                "vision_eos_token": "<|vision_end|>",
            },
            ["<|im_start|>"],
        )
    if family == "internvl":
        return (
            {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
            {
                "start_image_token": "<img>",
                "end_image_token": "</img>",
                "context_image_token": "<IMG_CONTEXT>",
                "video_token": "<video>",
            },
            ["<|im_start|>"],
        )
    if family in ("idefics3", "smolvlm"):
        bos = "<|begin_of_text|>" if family == "idefics3" else "<|im_start|>"
        row_col = [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]
        return (
            {"bos_token": bos, "eos_token": "<end_of_utterance>", "pad_token": "<|finetune_right_pad_id|>"},
            {
                "image_token": "<image>",
                "fake_image_token": "<fake_token_around_image>",
                "global_image_token": "<global-img>",
                "end_of_utterance_token": "<end_of_utterance>",
            },
            row_col,
        )
    raise ValueError(f"Unknown family {family!r}; choose one of {FAMILIES}.")


# Message content as a string or as a list of {"type": "image"} / {"type": "text", "text": ...} parts.
_CONTENT = (
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}IMAGE{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
)


def _chat_template(family: str) -> str:
    """A short Jinja chat template in the family's own format."""
    content = _CONTENT.replace(
        "IMAGE", IMAGE_PLACEHOLDERS[family] + ("\n" if family in ("llava", "llava_next", "internvl") else "")
    )
    if family in ("llava", "llava_next"):
        return (
            "{% for message in messages %}{% if message['role'] == 'user' %}USER: " + content + " "
            "{% else %}ASSISTANT: " + content + "</s>{% endif %}{% endfor %}"
            "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
        )
    if family in ("qwen2_vl", "qwen2_5_vl", "internvl"):
        return (
            "{% for message in messages %}<|im_start|>{{ message['role'] }}\n" + content + "<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
        )
    # Idefics3's tokenizer adds <|begin_of_text|> itself; SmolVLM's template starts with <|im_start|>.
    start = "" if family == "idefics3" else "<|im_start|>"
    return (
        start + "{% for message in messages %}{{ message['role'] | capitalize }}:" + content + "<end_of_utterance>\n"
        "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
    )


def build_tiny_tokenizer(family: str) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer of a few hundred entries with the family's special tokens and chat template.

    Example:

    ```python
    >>> tokenizer = build_tiny_tokenizer("llava")
    >>> tokenizer.convert_ids_to_tokens(tokenizer("<image>")["input_ids"])
    ['<s>', '<image>']
    ```
    """
    named, model_specific, extra = _special_tokens(family)
    # Special tokens first, so they get the lowest ids; dict.fromkeys keeps order and drops duplicates.
    specials = list(dict.fromkeys([*named.values(), *model_specific.values(), *extra]))
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB_TARGET,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_CORPUS, trainer=trainer)
    # LLaVA and Idefics3 put BOS in front of every text, as their real tokenizers do.
    add_bos = family in ("llava", "llava_next", "idefics3")
    if add_bos:
        bos = named["bos_token"]
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, backend.token_to_id(bos))]
        )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        chat_template=_chat_template(family),
        model_max_length=1024,
        extra_special_tokens=model_specific,
        **named,
    )
    if extra:
        tokenizer.add_special_tokens({"extra_special_tokens": extra}, replace_extra_special_tokens=False)
    return tokenizer


def _build_parts(family: str, tokenizer: PreTrainedTokenizerFast):
    """The model config, image processor and processor constructor kwargs of a tiny backbone."""
    vocab_size = len(tokenizer)
    bos_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    text_kwargs = _small_text_kwargs(vocab_size, bos_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    vision_kwargs = _small_vision_kwargs()

    if family == "llava":
        vision = CLIPVisionConfig(**vision_kwargs, image_size=32, patch_size=8)
        config = LlavaConfig(
            vision_config=vision,
            text_config=LlamaConfig(**text_kwargs),
            image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
            image_seq_length=16,
            vision_feature_layer=-1,
            vision_feature_select_strategy="default",
        )
        image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
        processor_kwargs = {
            "patch_size": 8,
            "vision_feature_select_strategy": "default",
            "num_additional_image_tokens": 1,
        }
    elif family == "llava_next":
        pinpoints = [[32, 64], [64, 32], [64, 64]]
        vision = CLIPVisionConfig(**vision_kwargs, image_size=32, patch_size=8)
        config = LlavaNextConfig(
            vision_config=vision,
            text_config=LlamaConfig(**text_kwargs),
            image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
            image_seq_length=16,
            image_grid_pinpoints=pinpoints,
            vision_feature_layer=-1,
            vision_feature_select_strategy="default",
        )
        image_processor = LlavaNextImageProcessorPil(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, image_grid_pinpoints=pinpoints
        )
        processor_kwargs = {
            "patch_size": 8,
            "vision_feature_select_strategy": "default",
            "num_additional_image_tokens": 1,
        }
    elif family in ("qwen2_vl", "qwen2_5_vl"):
        # head_dim = 32 / 4 = 8, so M-RoPE sections (t, h, w) must sum to head_dim / 2 = 4.
        text = {
            **text_kwargs,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]},
        }
        ids = {
            "image_token_id": tokenizer.convert_tokens_to_ids("<|image_pad|>"),
            "video_token_id": tokenizer.convert_tokens_to_ids("<|video_pad|>"),
            "vision_start_token_id": tokenizer.convert_tokens_to_ids("<|vision_start|>"),
            "vision_end_token_id": tokenizer.convert_tokens_to_ids("<|vision_end|>"),
        }
        if family == "qwen2_vl":
            vision = {
                "depth": 2,
                "embed_dim": _VISION_HIDDEN,
                "hidden_size": _TEXT_HIDDEN,
                "num_heads": 4,
                "mlp_ratio": 2,
                "patch_size": 8,
                "spatial_merge_size": 2,
                "temporal_patch_size": 2,
            }
            config = Qwen2VLConfig(vision_config=vision, text_config=text, **ids)
        else:
            vision = {
                "depth": 2,
                "hidden_size": _VISION_HIDDEN,
                "intermediate_size": 64,
                "out_hidden_size": _TEXT_HIDDEN,
                "num_heads": 4,
                "patch_size": 8,
                "spatial_merge_size": 2,
                "temporal_patch_size": 2,
                # Windows of 2 x 2 merged tokens, so images of a few dozen pixels already span several windows.
                "window_size": 32,
                "fullatt_block_indexes": [1],
            }
            config = Qwen2_5_VLConfig(vision_config=vision, text_config=text, **ids)
        image_processor = Qwen2VLImageProcessorPil(
            patch_size=8, merge_size=2, temporal_patch_size=2, size={"shortest_edge": 16 * 16, "longest_edge": 64 * 64}
        )
        processor_kwargs = {}
    elif family == "internvl":
        vision = InternVLVisionConfig(**vision_kwargs, image_size=32, patch_size=8)
        config = InternVLConfig(
            vision_config=vision,
            text_config=Qwen2Config(**text_kwargs),
            image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
            image_seq_length=4,
            downsample_ratio=0.5,
            vision_feature_layer=-1,
        )
        image_processor = GotOcr2ImageProcessorPil(
            size={"height": 32, "width": 32}, crop_to_patches=True, min_patches=1, max_patches=4
        )
        processor_kwargs = {"image_seq_length": 4}
    elif family in ("idefics3", "smolvlm"):
        config_class, vision_class, image_processor_class = (
            (Idefics3Config, Idefics3VisionConfig, Idefics3ImageProcessorPil)
            if family == "idefics3"
            else (SmolVLMConfig, SmolVLMVisionConfig, SmolVLMImageProcessorPil)
        )
        vision = vision_class(**vision_kwargs, image_size=32, patch_size=8)
        config = config_class(
            vision_config=vision,
            text_config=LlamaConfig(**text_kwargs),
            image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
            scale_factor=2,
        )
        image_processor = image_processor_class(
            size={"longest_edge": 64}, max_image_size={"longest_edge": 32}, do_image_splitting=True
        )
        processor_kwargs = {"image_seq_len": 4}
    else:
        raise ValueError(f"Unknown family {family!r}; choose one of {FAMILIES}.")
    return config, image_processor, processor_kwargs


def build_tiny_backbone(family: str, save_dir: str | Path, seed: int = 0) -> Path:
    """Builds a tiny random-weight backbone of `family` and saves model, tokenizer and image processor to `save_dir`.

    The folder loads offline with `AutoModelForImageTextToText.from_pretrained`, `AutoTokenizer.from_pretrained` and
    `AutoImageProcessor.from_pretrained`. `processor_config.json` holds the constructor kwargs of the family's
    processor (e.g. `patch_size`, `image_seq_length`), so the processor can be built where its class can be
    instantiated. Weights are deterministic given `seed`.

    Example:

    ```python
    >>> path = build_tiny_backbone("llava", "/tmp/tiny-llava")
    >>> sorted(p.name for p in path.iterdir())[:3]
    ['chat_template.jinja', 'config.json', 'generation_config.json']
    ```
    """
    if family not in FAMILIES:
        raise ValueError(f"Unknown family {family!r}; choose one of {FAMILIES}.")
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)

    tokenizer = build_tiny_tokenizer(family)
    config, image_processor, processor_kwargs = _build_parts(family, tokenizer)

    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config)
    model.eval()
    model.generation_config = GenerationConfig(
        bos_token_id=config.text_config.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(save_dir)
    tokenizer.save_pretrained(save_dir)
    image_processor.save_pretrained(save_dir)
    _save_processor(family, image_processor, tokenizer, processor_kwargs, save_dir)
    return save_dir


# The processor class of each family.
PROCESSOR_CLASSES = {
    "llava": "LlavaProcessor",
    "llava_next": "LlavaNextProcessor",
    "qwen2_vl": "Qwen2VLProcessor",
    "qwen2_5_vl": "Qwen2_5_VLProcessor",
    "internvl": "InternVLProcessor",
    "idefics3": "Idefics3Processor",
    "smolvlm": "SmolVLMProcessor",
}


def _save_processor(family, image_processor, tokenizer, processor_kwargs, save_dir: Path) -> None:
    """Saves the family's processor where it can be built here; else its `processor_config.json` (class + settings).

    Processors that take a video processor (Qwen2-VL, Qwen2.5-VL, InternVL, SmolVLM) need torchvision to be built,
    so for them only the settings file is written, in the layout `ProcessorMixin.save_pretrained` uses.
    """
    processor_class = getattr(transformers, PROCESSOR_CLASSES[family])
    if "video_processor" not in inspect.signature(processor_class.__init__).parameters:
        processor = processor_class(
            image_processor=image_processor,
            tokenizer=tokenizer,
            chat_template=tokenizer.chat_template,
            **processor_kwargs,
        )
        processor.save_pretrained(save_dir)
        return
    config = {"processor_class": PROCESSOR_CLASSES[family], **processor_kwargs}
    (save_dir / "processor_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
