"""The `icpt` dispatcher (icpt/commands/cli.py): every command listed with its help, bad input to any command as a
one-line error with a non-zero status, and the installed entry point."""

import os
import struct
import subprocess
import sys
import tomllib
import zlib
from pathlib import Path

import pytest

from helpers.cli import MAX_NEW_TOKENS
from helpers.images import random_image
from icpt.commands.cli import COMMANDS, main
from modeling_icpt import ConceptBank

ROOT = Path(__file__).resolve().parents[2]
# the console script as pyproject.toml declares it (`icpt = "icpt.commands.cli:main"`), run from this checkout
ICPT_SCRIPT = [sys.executable, "-c", "import sys; from {0} import {1}; sys.exit({1}())".format(
    *tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["icpt"].split(":"))]


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
