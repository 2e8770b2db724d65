"""`icpt encode` (icpt/commands/encode.py): a bank is never replaced unless told."""

import torch

from helpers.images import random_image
from icpt.commands.cli import main
from modeling_icpt import ConceptBank


def test_encode_never_replaces_a_bank_unless_told(checkpoint, photos, tmp_path, capsys):
    bank_file, model = tmp_path / "bank.safetensors", ["--model", str(checkpoint)]
    assert main(["encode", str(photos), "-o", str(bank_file), *model]) == 0
    first = ConceptBank.load(bank_file)
    assert main(["encode", str(photos), "-o", str(bank_file), *model]) == 2
    assert "already exists" in capsys.readouterr().err
    assert torch.equal(ConceptBank.load(bank_file).prompts, first.prompts)
    assert main(["encode", str(photos), "-o", str(bank_file), "--merge", *model]) == 2  # the same labels again
    assert "already holds ['<bo>', '<kiki>']" in capsys.readouterr().err
    more = tmp_path / "more"
    (more / "mia").mkdir(parents=True)
    random_image(7).save(more / "mia" / "1.png")
    assert main(["encode", str(more), "-o", str(bank_file), "--merge", *model]) == 0
    merged = ConceptBank.load(bank_file)
    assert merged.labels == ["<bo>", "<kiki>", "<mia>"] and torch.equal(merged.prompts[:2], first.prompts)
    assert main(["encode", str(more), "-o", str(bank_file), "--overwrite", *model]) == 0
    assert ConceptBank.load(bank_file).labels == ["<mia>"]
