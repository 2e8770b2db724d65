"""`icpt ask` (icpt/commands/ask.py): the answer the library gives, after `icpt encode`; the embedded default."""

import torch

from helpers.cli import MAX_NEW_TOKENS
from helpers.images import random_image
from icpt.commands.cli import main
from icpt.inference import DEFAULT_MODEL, choose
from modeling_icpt import ConceptBank, ICPTForConditionalGeneration
from processing_icpt import ICPTProcessor, load_image


def test_encode_then_ask(checkpoint, photos, direct_answer, tmp_path, capsys):
    bank_file = tmp_path / "my_concepts.safetensors"
    assert main(["encode", str(photos), "--output", str(bank_file), "--model", str(checkpoint)]) == 0
    printed = capsys.readouterr().out
    assert "<bo>: 2 photo(s)" in printed and "<kiki>: 1 photo(s)" in printed and f"Saved 2 concept(s) to {bank_file}" in printed

    bank = ConceptBank.load(bank_file)
    assert bank.labels == ["<bo>", "<kiki>"]
    # concepts encoded one at a time equal concepts encoded together
    model = ICPTForConditionalGeneration.from_pretrained(checkpoint).eval()
    processor = ICPTProcessor.from_pretrained(checkpoint)
    together = model.encode_concepts(**processor.prepare_references(
        {"<bo>": sorted((photos / "bo").glob("*.png")), "<kiki>": [photos / "<kiki>" / "0.jpg"]}))
    assert bank.lengths == together.lengths
    torch.testing.assert_close(bank.prompts, together.prompts, rtol=1e-4, atol=1e-5)

    question = "Is <bo> next to <kiki>?"
    assert main(["ask", str(tmp_path / "query.png"), question, "--bank", str(bank_file), "--model", str(checkpoint),
                 "--max-new-tokens", str(MAX_NEW_TOKENS)]) == 0
    assert capsys.readouterr().out.strip() == direct_answer(bank, tmp_path / "query.png", question)


def test_default_model_is_the_embedded_checkpoint(tmp_path, capsys):
    random_image(0).save(tmp_path / "q.png")
    status = main(["ask", str(tmp_path / "q.png"), "Hi?"])
    if DEFAULT_MODEL.is_dir():
        assert status == 0
    else:
        assert status == 2 and f"the embedded default checkpoint {DEFAULT_MODEL} is not installed" in capsys.readouterr().err


def test_ask_with_options_prints_the_option_the_library_chooses(checkpoint, photos, tmp_path, capsys):
    bank_file = tmp_path / "my_concepts.safetensors"
    assert main(["encode", str(photos), "--output", str(bank_file), "--model", str(checkpoint)]) == 0
    capsys.readouterr()
    question, options = "Is <bo> on the left or on the right?", ["on the left", "on the right"]
    assert main(["ask", str(tmp_path / "query.png"), question, "--bank", str(bank_file), "--model", str(checkpoint),
                 "--options", *options]) == 0
    model = ICPTForConditionalGeneration.from_pretrained(checkpoint).eval()
    processor = ICPTProcessor.from_pretrained(checkpoint)
    expected = choose(model, processor, question, options, load_image(tmp_path / "query.png", "photo"),
                      ConceptBank.load(bank_file))
    assert capsys.readouterr().out.strip() == expected and expected in options
    assert main(["ask", str(tmp_path / "query.png"), question, "--bank", str(bank_file), "--model", str(checkpoint),
                 "--options", "red"]) == 2
    assert "at least two options" in capsys.readouterr().err
