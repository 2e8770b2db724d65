"""The one model loader and the Python API of icpt/inference.py: what `load_model` refuses and how it says so, and a
tiny checkpoint loaded, encoded and asked."""

import json
from types import SimpleNamespace

import pytest
import torch

from helpers.images import random_image
from icpt import inference
from icpt.inference import answer, choose, encode, load_bank, load_model, option_log_likelihoods
from modeling_icpt import ConceptBank, ICPTForConditionalGeneration
from processing_icpt import ICPTProcessor


def test_a_missing_folder_is_refused_with_a_clear_message(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"No ICPT checkpoint at .*missing: check the path"):
        load_model(tmp_path / "missing")
    for typo in ("./checkpoint", "~/x", "a/b/c"):  # local by their form: never sent to the Hub
        with pytest.raises(FileNotFoundError, match="No ICPT checkpoint at"):
            load_model(typo)


def test_a_folder_that_is_not_an_icpt_checkpoint_is_refused(tmp_path):
    (tmp_path / "backbone").mkdir()
    (tmp_path / "backbone" / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(ValueError, match=r"not an ICPT checkpoint \(its config.json has model_type 'llava'\)"):
        load_model(tmp_path / "backbone")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"not an ICPT checkpoint \(no config.json\).*save_pretrained"):
        load_model(tmp_path / "empty")


def test_a_missing_embedded_default_says_to_pass_a_model(tmp_path, monkeypatch):
    monkeypatch.setattr(inference, "DEFAULT_MODEL", tmp_path / "projector")
    with pytest.raises(FileNotFoundError, match=r"embedded default checkpoint .*projector is not installed: pass --model"):
        load_model(tmp_path / "projector")


def test_the_embedded_default_lives_in_the_package():
    assert inference.DEFAULT_BACKBONE == inference.DEFAULT_DIR / "backbone"
    assert inference.DEFAULT_MODEL == inference.DEFAULT_DIR / "projector"
    assert inference.DEFAULT_DIR.parent.name == "icpt" and inference.DEFAULT_DIR.is_absolute()


def test_too_many_photos_for_the_projector_are_refused_before_encoding():
    model = SimpleNamespace(config=SimpleNamespace(max_references=2))
    with pytest.raises(ValueError, match="<bo> has 3 photos but this projector takes at most 2 per concept"):
        encode(model, None, {"<bo>": ["1.jpg", "2.jpg", "3.jpg"]})
    assert load_bank(None) is None


def test_load_encode_answer_on_a_tiny_checkpoint(tiny_llava, tmp_path):
    torch.manual_seed(0)
    processor = ICPTProcessor.from_backbone(tiny_llava, max_prompt_length=2)
    built = ICPTForConditionalGeneration.from_backbone(tiny_llava, max_prompt_length=2, projector_hidden_size=16,
                                                       projector_heads=2, projector_layers=1)
    built.save_pretrained(tmp_path / "checkpoint")
    processor.save_pretrained(tmp_path / "checkpoint")
    model = load_model(tmp_path / "checkpoint", device="cpu")
    assert isinstance(model, ICPTForConditionalGeneration) and not model.training
    bank = encode(model, processor, {"<bo>": [random_image(0)]}, progress=False)
    assert bank.labels == ["<bo>"]
    bank.save(tmp_path / "bank.safetensors")
    assert isinstance(load_bank(tmp_path / "bank.safetensors"), ConceptBank)
    reply = answer(model, processor, "Is <bo> in this photo?", random_image(1), bank, max_new_tokens=2)
    assert isinstance(reply, str)
    # the same as generating directly
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is <bo> in this photo?"}]}]
    inputs = processor(messages=messages, images=[[random_image(1)]], concepts=bank)
    out = model.generate(**inputs, concepts=bank, max_new_tokens=2, do_sample=False)
    assert reply == processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def test_choose_picks_the_option_whose_tokens_the_model_finds_most_likely(tiny_llava, tmp_path):
    torch.manual_seed(0)
    processor = ICPTProcessor.from_backbone(tiny_llava, max_prompt_length=2)
    model = ICPTForConditionalGeneration.from_backbone(tiny_llava, max_prompt_length=2, projector_hidden_size=16,
                                                       projector_heads=2, projector_layers=1).eval()
    bank = encode(model, processor, {"<bo>": [random_image(0)]}, progress=False)
    options = ["on the left", "on the right", "red"]  # several tokens each, and of different lengths
    question = "Is <bo> on the left or on the right?"
    picked = choose(model, processor, question, options, random_image(1), bank)
    # each option's log-likelihood token by token: the prompt's logits, then the prompt plus the option's first
    # tokens, one forward pass per token
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    inputs = processor(messages=messages, images=[[random_image(1)]], concepts=bank)
    expected = []
    for option in options:
        ids = processor.tokenizer(option, add_special_tokens=False)["input_ids"]
        total, prefix = 0.0, inputs["input_ids"]
        for token in ids:
            step = {**inputs, "input_ids": prefix, "attention_mask": torch.ones_like(prefix)}
            with torch.no_grad():
                total += model(**step, concepts=bank).logits[0, -1].float().log_softmax(-1)[token].item()
            prefix = torch.cat([prefix, torch.tensor([[token]])], dim=1)
        expected.append(total)
    scores = option_log_likelihoods(model, processor.tokenizer, inputs, options, concepts=bank)
    torch.testing.assert_close(scores, torch.tensor(expected), rtol=1e-4, atol=1e-4)
    assert picked == options[max(range(len(options)), key=expected.__getitem__)]
    with pytest.raises(ValueError, match="has no tokens"):
        option_log_likelihoods(model, processor.tokenizer, inputs, ["red", ""], concepts=bank)
