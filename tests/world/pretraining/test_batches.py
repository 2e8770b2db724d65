"""The pretraining's batches (icpt/world/pretraining/batches.py): the fast text path matches the processor."""

import numpy as np
import torch
from PIL import Image

from icpt.world.pretraining.batches import TextEncoder, format_prompt
from icpt.world.pretraining.modeling import build_processor
from icpt.world.tasks import WorldTasks
from icpt.world.world import World


def test_fast_path_matches_the_saved_processor(tokenizer, compare_example, tmp_path):
    from transformers import AutoProcessor

    build_processor(tokenizer).save_pretrained(tmp_path)
    processor = AutoProcessor.from_pretrained(tmp_path)
    messages = [
        {"role": "user", "content": [{"type": "image"}] * 3 + [{"type": "text", "text": compare_example.question}]}
    ]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    assert prompt == format_prompt(3, compare_example.question)
    inputs = processor(
        images=[Image.fromarray(image) for image in compare_example.images], text=prompt, return_tensors="pt"
    )
    batch = TextEncoder(tokenizer, num_image_tokens=16).batch([compare_example], with_answers=False)
    assert torch.equal(inputs["input_ids"], batch["input_ids"])
    assert (inputs["input_ids"] == tokenizer.convert_tokens_to_ids("<image>")).sum() == 3 * 16
    torch.testing.assert_close(inputs["pixel_values"], batch["pixel_values"])


def test_fast_path_places_the_images_of_a_named_question(tokenizer, tmp_path):
    from transformers import AutoProcessor

    world = World(seed=0, num_identities=40)
    example = WorldTasks(world).named_question(np.random.default_rng(0), num_references=2, kind="recognition")
    preamble, question = example.question.split("\n<image> ")
    build_processor(tokenizer).save_pretrained(tmp_path)
    processor = AutoProcessor.from_pretrained(tmp_path)
    # The ICPT layout: the preamble text first, then the query image and the question.
    messages = [
        {"role": "user", "content": [
            {"type": "text", "text": preamble + "\n"}, {"type": "image"}, {"type": "text", "text": question}
        ]}
    ]  # fmt: skip
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(images=[Image.fromarray(image) for image in example.images], text=prompt, return_tensors="pt")
    batch = TextEncoder(tokenizer, num_image_tokens=16).batch([example], with_answers=False)
    assert torch.equal(inputs["input_ids"], batch["input_ids"])
    torch.testing.assert_close(inputs["pixel_values"], batch["pixel_values"])
    tokens = tokenizer.convert_ids_to_tokens(batch["input_ids"][0])
    assert tokens[1:4] == ["the", "object", "is"] and tokens.count("<image>") == 3 * 16


def test_labels_cover_only_the_answer(tokenizer, compare_example):
    batch = TextEncoder(tokenizer, num_image_tokens=16).batch([compare_example])
    supervised = batch["input_ids"][batch["labels"] != -100].tolist()
    assert tokenizer.convert_ids_to_tokens(supervised) == [compare_example.answer, "<|end|>"]
    assert batch["pixel_values"].shape == (3, 3, 64, 64)


def test_a_text_only_batch_has_no_pixels(tokenizer):
    example = WorldTasks(World(seed=0, num_identities=40)).label_copy(np.random.default_rng(1))
    batch = TextEncoder(tokenizer, num_image_tokens=16).batch([example, example])
    assert "pixel_values" not in batch and batch["input_ids"].shape[0] == 2
    supervised = batch["input_ids"][0][batch["labels"][0] != -100]
    assert tokenizer.decode(supervised).replace(" ", "") == example.answer.replace(" ", "") + "<|end|>"
