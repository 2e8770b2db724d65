"""The `icpt` command line on a tiny ICPT checkpoint: each subcommand, and bad input as one-line errors."""

import io
import os
import struct
import subprocess
import sys
import tomllib
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image

from helpers.episodes import make_episodes
from helpers.images import random_image
from icpt.commands.cli import COMMANDS, main
from icpt.inference import DEFAULT_MODEL
from modeling_icpt import ConceptBank, ICPTForConditionalGeneration
from processing_icpt import ICPTProcessor

ROOT = Path(__file__).resolve().parents[1]
# the console script as pyproject.toml declares it (`icpt = "icpt.commands.cli:main"`), run from this checkout
ICPT_SCRIPT = [sys.executable, "-c", "import sys; from {0} import {1}; sys.exit({1}())".format(
    *tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["icpt"].split(":"))]


@pytest.fixture(scope="module")
def checkpoint(tiny_backbone_dirs, tmp_path_factory):
    """A tiny, untrained ICPT checkpoint (projector + processor) around the tiny LLaVA backbone."""
    path = tiny_backbone_dirs["llava"]
    torch.manual_seed(0)
    processor = ICPTProcessor.from_backbone(path, max_prompt_length=4)
    model = ICPTForConditionalGeneration.from_backbone(
        path, max_prompt_length=4, min_prompt_length=2, projector_hidden_size=32, projector_heads=2, projector_layers=1
    )
    folder = tmp_path_factory.mktemp("icpt") / "checkpoint"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture
def photos(tmp_path):
    """my_photos/bo/ (two photos), my_photos/<kiki>/ (one photo and a text file to skip), and a query photo."""
    root = tmp_path / "my_photos"
    (root / "bo").mkdir(parents=True)
    (root / "<kiki>").mkdir()
    for i in range(2):
        random_image(i).save(root / "bo" / f"{i}.png")
    random_image(2).save(root / "<kiki>" / "0.jpg")
    (root / "<kiki>" / "notes.txt").write_text("not a photo")
    random_image(4, size=(48, 36)).save(tmp_path / "query.png")
    random_image(5).save(tmp_path / "other.png")
    return root


MAX_NEW_TOKENS = 6  # the tiny model's answers are noise: a few tokens show the same as many


@pytest.fixture(scope="module")
def direct_answer(checkpoint):
    """`(bank, photo path, question) -> answer` through the Python API, to compare with the command line's."""
    model = ICPTForConditionalGeneration.from_pretrained(checkpoint).eval()
    processor = ICPTProcessor.from_pretrained(checkpoint)

    def answer(bank, image_path, question):
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        inputs = processor(messages=messages, images=[[Image.open(image_path).convert("RGB")]], concepts=bank)
        out = model.generate(**inputs, concepts=bank, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
        return processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()

    return answer


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


def training_arguments(tmp_path, *extra):
    make_episodes(4).save_to_disk(tmp_path / "episodes")
    return ["train", "--episodes", str(tmp_path / "episodes"), "--max_steps", "1", "--per_device_train_batch_size", "2",
            "--report_to", "none", "--use_cpu", "true", "--save_strategy", "no", "--dataloader_num_workers", "0", *extra]


def test_train_continues_a_checkpoint_and_ask_uses_the_result(checkpoint, photos, tmp_path, capsys):
    arguments = training_arguments(tmp_path, "--model", str(checkpoint), "--output_dir", str(tmp_path / "trained"),
                                   "--learning_rate", "1e-2")
    assert main(arguments) == 0
    before = ICPTForConditionalGeneration.from_pretrained(checkpoint)
    after = ICPTForConditionalGeneration.from_pretrained(tmp_path / "trained")
    assert after.config.projector_hidden_size == before.config.projector_hidden_size == 32  # settings kept
    assert any(not torch.equal(a, b) for a, b in zip(after.projector.parameters(), before.projector.parameters()))
    bank_file = tmp_path / "bank.safetensors"
    assert main(["encode", str(photos), "-o", str(bank_file), "--model", str(tmp_path / "trained")]) == 0
    capsys.readouterr()
    assert main(["ask", str(tmp_path / "query.png"), "Is <bo> here?", "--bank", str(bank_file),
                 "--model", str(tmp_path / "trained"), "--max-new-tokens", str(MAX_NEW_TOKENS)]) == 0
    assert capsys.readouterr().out.strip()


@pytest.mark.slow
def test_train_a_fresh_projector(tiny_backbone_dirs, tmp_path):
    arguments = training_arguments(tmp_path, "--backbone", str(tiny_backbone_dirs["llava"]), "--output_dir",
                                   str(tmp_path / "fresh"), "--max_prompt_length", "4", "--projector_hidden_size", "32",
                                   "--projector_heads", "2", "--projector_layers", "1")
    assert main(arguments) == 0
    trained = ICPTForConditionalGeneration.from_pretrained(tmp_path / "fresh")
    assert trained.config.max_prompt_length == 4 and trained.config.projector_hidden_size == 32
    assert ICPTProcessor.from_pretrained(tmp_path / "fresh").max_prompt_length == 4


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help(command, capsys):
    assert main([command, "--help"]) == 0
    assert capsys.readouterr().out.startswith(f"usage: icpt {command}")


def test_every_command_is_listed(capsys):
    assert main(["--help"]) == 0
    listed = capsys.readouterr().out
    assert all(f"    {command}" in listed for command in COMMANDS)
    assert main(["magic"]) == 2 and "invalid choice: 'magic'" in capsys.readouterr().err


# ---------------------------------------------------------------- bad input


def decompression_bomb_png(side: int = 100_000) -> bytes:
    """A tiny PNG file whose header claims side x side pixels: opening it would need gigabytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _bad_inputs(root: Path, checkpoint: Path, backbone: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (arguments, a phrase the one-line error must contain)."""
    model = ["--model", str(checkpoint)]
    (root / "empty").mkdir()
    (root / "no_photos" / "bo").mkdir(parents=True)
    (root / "no_photos" / "bo" / "readme.txt").write_text("no photos here")
    (root / "unreadable" / "bo").mkdir(parents=True)
    (root / "unreadable" / "bo" / "1.png").write_text("this is text, not a PNG")
    (root / "bad_label" / "my dog").mkdir(parents=True)
    random_image(0).save(root / "bad_label" / "my dog" / "1.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    random_image(1).save(root / "query.png")
    (root / "good" / "bo").mkdir(parents=True)
    random_image(2).save(root / "good" / "bo" / "1.png")
    main(["encode", str(root / "good"), "-o", str(root / "bank.safetensors"), *model])
    query, bank = str(root / "query.png"), ["--bank", str(root / "bank.safetensors")]
    (root / "twins" / "bo").mkdir(parents=True)
    (root / "twins" / "<bo>").mkdir()
    for i, name in enumerate(("bo", "<bo>")):
        random_image(i).save(root / "twins" / name / "1.png")
    (root / "damaged.safetensors").write_bytes((root / "bank.safetensors").read_bytes()[:64])
    (root / "bomb" / "bo").mkdir(parents=True)
    (root / "bomb" / "bo" / "1.png").write_bytes(decompression_bomb_png())
    return {
        "two folders for one label": (["encode", str(root / "twins"), "-o", str(root / "t.safetensors"), *model],
                                      "give the label <bo>"),
        "existing bank": (["encode", str(root / "good"), "-o", str(root / "bank.safetensors"), *model],
                          "already exists: pass --merge"),
        "damaged bank": (["ask", query, "Is <bo> here?", "--bank", str(root / "damaged.safetensors"), *model],
                         "not a readable concept bank"),
        "decompression bomb": (["encode", str(root / "bomb"), "-o", str(root / "b.safetensors"), *model],
                               "too large to open safely"),
        "mistyped local bank": (["ask", query, "Is <bo> here?", "--bank", "banks/my_bnak.safetensors", *model],
                                "no such file or folder"),
        "missing folder": (["encode", str(root / "nowhere"), *model], "does not exist"),
        "empty folder": (["encode", str(root / "empty"), *model], "no concept sub-folders"),
        "concept folder without photos": (["encode", str(root / "no_photos"), *model], "has no photos"),
        "unreadable reference": (["encode", str(root / "unreadable"), *model], "not a readable image"),
        "label with a space": (["encode", str(root / "bad_label"), *model], "one word in angle brackets"),
        "missing photo": (["ask", str(root / "nope.png"), "Is <bo> here?", *bank, *model], "does not exist"),
        "unreadable photo": (["ask", str(root / "broken.jpg"), "Is <bo> here?", *bank, *model], "not a readable image"),
        "unknown concept": (["ask", query, "Is <mia> here?", *bank, *model], "'<mia>', which is not among"),
        "concept without a bank": (["ask", query, "Is <bo> here?", *model], "'<bo>', which is not among"),
        "missing bank": (["ask", query, "Is <bo> here?", "--bank", str(root / "nobank.safetensors"), *model],
                         "No concept bank"),
        "missing checkpoint": (["ask", query, "Hi?", "--model", str(root / "no_ckpt")], "No ICPT checkpoint"),
        "not an ICPT checkpoint": (["ask", query, "Hi?", "--model", str(backbone)], "not an ICPT checkpoint"),
        "missing chat photo": (["chat", "--image", str(root / "nope.png"), *model], "does not exist"),
        "missing argument": (["ask", query], "required: question"),
        "missing episodes": (["train", "--model", str(checkpoint), "--output_dir", str(root / "run"),
                              "--episodes", str(root / "no_episodes")], "No episode dataset"),
        "bad training option": (["train", "--max_steps", "many"], "invalid int value"),
    }


def test_bad_input_exits_non_zero_with_one_line(checkpoint, tiny_backbone_dirs, tmp_path, capsys):
    cases = _bad_inputs(tmp_path, checkpoint, tiny_backbone_dirs["llava"])
    capsys.readouterr()
    for name, (argv, phrase) in cases.items():
        status = main(argv)
        out, err = capsys.readouterr()
        assert status == 2, (name, status, out, err)
        # one line says what went wrong (above it, at most the progress bars of loading the model)
        assert "Traceback" not in err and err.count("error:") == 1, (name, err)
        assert err.endswith("\n") and err.count("\n", err.index("error:")) == 1, (name, err)
        assert phrase in err.splitlines()[-1], (name, err)


def test_default_model_is_the_embedded_checkpoint(tmp_path, capsys):
    random_image(0).save(tmp_path / "q.png")
    status = main(["ask", str(tmp_path / "q.png"), "Hi?"])
    if DEFAULT_MODEL.is_dir():
        assert status == 0
    else:
        assert status == 2 and f"the embedded default checkpoint {DEFAULT_MODEL} is not installed" in capsys.readouterr().err


def test_installed_entry_point_reports_bad_input_in_one_line(tmp_path):
    # a wrong folder fails before any model loads
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([*ICPT_SCRIPT, "encode", str(tmp_path / "nowhere")], capture_output=True, text=True,
                            timeout=120, env=env, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "does not exist" in result.stderr
    help_text = subprocess.run([sys.executable, "-m", "icpt", "--help"], capture_output=True, text=True, timeout=120,
                               env=env, cwd=tmp_path)
    assert help_text.returncode == 0 and help_text.stdout.startswith("usage: icpt")


@pytest.mark.slow  # a fresh interpreter imports torch and transformers: about 10 s
def test_installed_entry_point_answers(checkpoint, photos, direct_answer, tmp_path):
    bank_file = tmp_path / "bank.safetensors"
    assert main(["encode", str(photos), "-o", str(bank_file), "--model", str(checkpoint)]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([*ICPT_SCRIPT, "ask", str(tmp_path / "query.png"), "Is <bo> here?", "--bank",
                             str(bank_file), "--model", str(checkpoint), "--max-new-tokens", str(MAX_NEW_TOKENS)],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    bank = ConceptBank.load(bank_file)
    assert result.stdout.strip() == direct_answer(bank, tmp_path / "query.png", "Is <bo> here?")
