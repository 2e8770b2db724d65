"""The backbones the cost benchmark builds (icpt.evaluation.costs.backbones): the full-size configurations match the
published models, and are refused without a GPU."""

import pytest
import torch

from helpers.costs import run
from icpt.evaluation.costs import backbones


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the full-size backbone is really built")
def test_full_size_configuration_is_refused_without_a_gpu(capsys):
    with pytest.raises(ValueError, match=r"7\.06 B-parameter.*GPU"):
        run(["--config", "llava-1.5-7b"])
    with pytest.raises(ValueError, match="--config only"):
        run(["--num-layers", "1"])


def test_full_size_configurations_match_the_published_models():
    labels = ["<c0>", "<c1>"]
    llava, llava_processor, llava_side = backbones.full_size_backbone("llava-1.5-7b", labels)
    assert backbones.count_parameters(llava) == 7_063_427_072  # llava-hf/llava-1.5-7b-hf
    assert llava_side == 336 and llava.text_config.hidden_size == 4096
    qwen, qwen_processor, _ = backbones.full_size_backbone("qwen2.5-vl-7b", labels)
    assert backbones.count_parameters(qwen) == 8_292_166_656  # Qwen/Qwen2.5-VL-7B-Instruct
    for config, processor in ((llava, llava_processor), (qwen, qwen_processor)):
        # the local tokenizer's image token is the one the config expects, labels stay whole
        image_token = processor.backbone_processor.image_token
        assert processor.tokenizer.convert_tokens_to_ids(image_token) == config.image_token_id
        assert processor.tokenizer.tokenize("<c1>") == ["<c1>"]
    with pytest.raises(ValueError, match="Unknown --config"):
        backbones.full_size_backbone("gpt-5", labels)
