"""The world backbone itself: its WordPiece tokenizer, its `LlavaProcessor` (CLIP image processor + chat template)
and the small `LlavaForConditionalGeneration` (CLIP vision tower + Llama language model) built from settings."""

from __future__ import annotations

import string

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

from icpt.world.tasks import vocabulary

IMAGE_TOKEN = "<image>"
END_TOKEN = "<|end|>"
SPECIAL_TOKENS = ["[PAD]", "[UNK]", IMAGE_TOKEN, "<|system|>", "<|user|>", "<|assistant|>", END_TOKEN]
# "<user>" style roles; images and text in the order given; generation starts after "<|assistant|>".
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>' }}"
    "{% if message['content'] is string %}{{ ' ' + message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}{{ ' <image>' }}"
    "{% elif item['type'] == 'text' %}{{ ' ' + item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ ' <|end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)
# Words, "<label>"-style names kept whole (WordPiece then spells unknown ones out), punctuation.
PRE_TOKENIZER_PATTERN = r"<[^<>\s]+>|\w+|[^\w\s]"
IMAGE_MEAN = IMAGE_STD = [0.5, 0.5, 0.5]


def build_tokenizer():
    """A WordPiece tokenizer: every world word is one token; other words are spelled out.

    WordPiece rather than WordLevel: on world text both give the same tokens, but WordLevel would
    turn every label it has never seen (``<bo>``, ``<w17>``) into the same ``[UNK]``, and ICPT needs
    labels to stay distinguishable.

    Example:

    ```python
    >>> tokenizer = build_tokenizer()
    >>> tokenizer.tokenize("A red circle, <bo>?")
    ['a', 'red', 'circle', ',', '<', '##b', '##o', '##>', '?']
    ```
    """
    pieces = list(dict.fromkeys(vocabulary() + list(string.ascii_lowercase + string.digits + string.punctuation)))
    continuation = ["##" + c for c in string.ascii_lowercase + string.digits + string.punctuation]
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS + pieces + continuation)}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=64))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(PRE_TOKENIZER_PATTERN), behavior="isolated")]
    )
    tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    tokenizer.add_special_tokens(SPECIAL_TOKENS)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="[PAD]",
        unk_token="[UNK]",
        eos_token=END_TOKEN,
        padding_side="right",
        model_input_names=["input_ids", "attention_mask"],
    )


def build_processor(tokenizer, image_size: int = 64, patch_size: int = 16):
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=IMAGE_MEAN,
        image_std=IMAGE_STD,
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        chat_template=CHAT_TEMPLATE,
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=1,  # CLIP's CLS token, dropped by the "default" strategy
    )


def build_model(tokenizer, args):
    vision_config = CLIPVisionConfig(
        hidden_size=args.vision_hidden,
        intermediate_size=4 * args.vision_hidden,
        num_hidden_layers=args.vision_layers,
        num_attention_heads=4,
        image_size=args.image_size,
        patch_size=args.patch_size,
        projection_dim=args.vision_hidden,
    )
    text_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.text_hidden,
        intermediate_size=3 * args.text_hidden,
        num_hidden_layers=args.text_layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=2048,  # 3 concepts x 5 references x 64 image tokens fit
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    num_image_tokens = (args.image_size // args.patch_size) ** 2
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,  # the layer the contrastive stage shapes
        image_seq_length=num_image_tokens,
        tie_word_embeddings=True,
    )
    torch.manual_seed(args.seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model
