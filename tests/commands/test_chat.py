"""`icpt chat` (icpt/commands/chat.py): questions read line by line, switching photos."""

import io
import sys

from helpers.cli import MAX_NEW_TOKENS
from icpt.commands.cli import main
from modeling_icpt import ConceptBank


def test_chat_reads_questions_and_switches_photos(checkpoint, photos, direct_answer, tmp_path, capsys, monkeypatch):
    bank_file = tmp_path / "bank.safetensors"
    assert main(["encode", str(photos), "-o", str(bank_file), "--model", str(checkpoint)]) == 0
    capsys.readouterr()
    lines = ["Is <bo> here?", "", "/image " + str(tmp_path / "other.png"), "Is <kiki> here?", "Is <nobody> here?",
             "/image " + str(tmp_path / "missing.png"), "/quit", "Is <bo> here?"]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines) + "\n"))
    assert main(["chat", "--image", str(tmp_path / "query.png"), "--bank", str(bank_file),
                 "--model", str(checkpoint), "--max-new-tokens", str(MAX_NEW_TOKENS)]) == 0
    out, err = capsys.readouterr()
    bank = ConceptBank.load(bank_file)
    expected = [direct_answer(bank, tmp_path / "query.png", "Is <bo> here?"),
                f"Photo: {tmp_path / 'other.png'}",
                direct_answer(bank, tmp_path / "other.png", "Is <kiki> here?")]
    header, rest = out.split("\n", 1)
    assert header.startswith("Type a question") and header.endswith("Concepts: <bo>, <kiki>.")
    assert rest == "".join(line + "\n" for line in expected)  # and nothing after /quit
    errors = [line for line in err.splitlines() if line.startswith("error:")]  # (not the loading progress bars)
    assert len(errors) == 2 and "'<nobody>'" in errors[0] and "missing.png" in errors[1]
