"""The pretraining's tokenizer and processor (icpt/world/pretraining/modeling.py), and the shipped backbone's."""

from icpt.inference import DEFAULT_BACKBONE
from icpt.world.pretraining.modeling import build_processor
from icpt.world.tasks import split_words, vocabulary


def test_world_words_are_single_tokens_and_labels_stay_distinct(tokenizer):
    for word in vocabulary():
        assert tokenizer.tokenize(word) == [word]
    assert tokenizer.convert_tokens_to_ids("[UNK]") not in tokenizer("<bo> <kiki> <w17>")["input_ids"]
    assert tokenizer.tokenize("<bo>") != tokenizer.tokenize("<bi>")
    text = "a red circle with blue stripes, a dot on the left and a hat."
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    assert split_words(text) == tokenizer.tokenize(text)


def test_the_shipped_backbone_has_the_tokenizer_and_processor_the_library_builds(tokenizer):
    from transformers import AutoProcessor, AutoTokenizer, LlavaConfig

    assert AutoTokenizer.from_pretrained(DEFAULT_BACKBONE).get_vocab() == tokenizer.get_vocab()
    config = LlavaConfig.from_pretrained(DEFAULT_BACKBONE)
    shipped = AutoProcessor.from_pretrained(DEFAULT_BACKBONE)
    built = build_processor(tokenizer, config.vision_config.image_size, config.vision_config.patch_size)
    assert shipped.chat_template == built.chat_template and shipped.patch_size == built.patch_size
    assert shipped.image_processor.to_dict() == built.image_processor.to_dict()
    assert shipped.image_token == built.image_token and shipped.num_additional_image_tokens == 1
