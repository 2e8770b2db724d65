"""The SmolLM2-in-LLaVA test backbone answers like the real SmolLM2 and runs images end to end.

The first run converts SmolLM2's GGUF file (~25 s on 2 shared cores) into the test cache
(`$ICPT_TEST_CACHE`, default `~/.cache/icpt-tests`); later runs load the cached folder in
well under a second. The test that rebuilds into a fresh folder and compares every weight
with the GGUF file is marked slow.
"""

import time

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from transformers import AutoModelForImageTextToText, AutoProcessor

from helpers.smollm2_backbone import (
    BUILD_VERSION,
    GGUF_FILE,
    IMAGE_TOKEN,
    NUM_IMAGE_TOKENS,
    build_smollm2_llava,
    smollm2_package_folder,
    smollm2_unavailable_reason,
)


UNAVAILABLE_REASON = smollm2_unavailable_reason()
pytestmark = pytest.mark.skipif(UNAVAILABLE_REASON is not None, reason=f"SmolLM2 backbone: {UNAVAILABLE_REASON}")

FRANCE_QUESTION = [{"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]}]


@pytest.fixture(scope="module")
def smollm2_llava_path():
    # Converts the GGUF file on the first run on this machine, then just returns the cached folder.
    return build_smollm2_llava()


@pytest.fixture(scope="module")
def processor(smollm2_llava_path):
    return AutoProcessor.from_pretrained(smollm2_llava_path, local_files_only=True)


@pytest.fixture(scope="module")
def model(smollm2_llava_path):
    return AutoModelForImageTextToText.from_pretrained(smollm2_llava_path, local_files_only=True).eval()


def random_image(seed: int, size=(48, 40)) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(*size, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def generate_answer(model, processor, inputs, max_new_tokens: int) -> str:
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return processor.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


@pytest.mark.parametrize("dtype", ["checkpoint", torch.float32])
def test_text_question_answers_paris(smollm2_llava_path, model, processor, dtype):
    if dtype != "checkpoint":
        model = AutoModelForImageTextToText.from_pretrained(smollm2_llava_path, dtype=dtype, local_files_only=True)
    inputs = processor.apply_chat_template(
        FRANCE_QUESTION, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    assert "pixel_values" not in inputs

    answer = generate_answer(model, processor, inputs, max_new_tokens=12)

    assert "Paris" in answer, f"SmolLM2 inside LLaVA ({model.dtype}) answered {answer!r}"


def test_image_question_generates_end_to_end(model, processor):
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is in this image?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(text=prompt, images=random_image(seed=0), return_tensors="pt")

    image_token_count = (inputs["input_ids"] == model.config.image_token_id).sum().item()
    assert image_token_count == NUM_IMAGE_TOKENS == model.config.image_seq_length

    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert output.shape[1] > inputs["input_ids"].shape[1]
    assert processor.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()

    # The image really reaches the language model: another image changes the next-token logits.
    other_inputs = processor(text=prompt, images=random_image(seed=1), return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1]
        other_logits = model(**other_inputs).logits[0, -1]
    assert not torch.equal(logits, other_logits)


def test_typed_and_plain_text_messages_render_alike(processor):
    plain = [{"role": "user", "content": "What is the capital of France?"}]

    typed_text = processor.apply_chat_template(FRANCE_QUESTION, add_generation_prompt=True)
    plain_text = processor.tokenizer.apply_chat_template(plain, add_generation_prompt=True, tokenize=False)

    assert typed_text == plain_text
    assert plain_text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert plain_text.endswith("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n")


def test_cached_folder_is_bfloat16_safetensors_with_tied_output(smollm2_llava_path, model, processor):
    tokenizer = processor.tokenizer
    with safe_open(smollm2_llava_path / "model.safetensors", framework="pt") as checkpoint:
        dtypes = {checkpoint.get_slice(name).get_dtype() for name in checkpoint.keys()}
    assert dtypes == {"BF16"}

    text_config = model.config.text_config
    assert text_config.vocab_size == len(tokenizer) == tokenizer.convert_tokens_to_ids(IMAGE_TOKEN) + 1
    assert model.config.image_token_id == tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert (text_config.hidden_size, text_config.num_hidden_layers) == (576, 30)  # SmolLM2-135M
    assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id


@pytest.mark.slow
def test_fresh_build_copies_every_smollm2_weight(tmp_path):
    from transformers import AutoModelForCausalLM

    started = time.perf_counter()
    path = build_smollm2_llava(tmp_path)
    build_seconds = time.perf_counter() - started
    assert path == tmp_path / BUILD_VERSION
    assert [entry.name for entry in tmp_path.iterdir()] == [BUILD_VERSION]  # no half-built folder left behind

    started = time.perf_counter()
    assert build_smollm2_llava(tmp_path) == path
    assert time.perf_counter() - started < build_seconds / 10  # second call reuses the cache

    reference = AutoModelForCausalLM.from_pretrained(smollm2_package_folder(), gguf_file=GGUF_FILE)
    reference_state = reference.model.state_dict()
    language_state = AutoModelForImageTextToText.from_pretrained(path, local_files_only=True).model.language_model
    language_state = language_state.state_dict()
    assert language_state.keys() == reference_state.keys()
    for name, reference_weight in reference_state.items():
        expected = reference_weight.to(torch.bfloat16)
        if name == "embed_tokens.weight":
            num_real_tokens = expected.shape[0]
            assert torch.equal(language_state[name][:num_real_tokens], expected), "real token rows changed"
            assert language_state[name].shape[0] == num_real_tokens + 1  # one added <image> row
        else:
            assert torch.equal(language_state[name], expected), f"{name} differs from the GGUF weight"


def test_missing_gguf_file_is_reported(tmp_path, monkeypatch):
    from helpers import smollm2_backbone

    monkeypatch.setattr(smollm2_backbone, "smollm2_package_folder", lambda: tmp_path)

    reason = smollm2_unavailable_reason()
    assert reason is not None and GGUF_FILE in reason
    with pytest.raises(FileNotFoundError, match=GGUF_FILE):
        build_smollm2_llava(tmp_path / "cache")
    assert not (tmp_path / "cache").exists()
