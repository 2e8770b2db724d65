"""examples/quickstart.py, run as a user runs it, on a tiny stand-in: the same answer as the command line."""

from pathlib import Path

import torch

from helpers.examples import last_answer, run_example
from icpt.commands.cli import main as icpt_main
from modeling_icpt import ConceptBank, ICPTForConditionalGeneration
from processing_icpt import ICPTProcessor


def test_quickstart_answers_like_the_command_line(tiny_backbone_dirs, photos, tmp_path, capsys):
    path = tiny_backbone_dirs["llava"]
    torch.manual_seed(0)
    ICPTForConditionalGeneration.from_backbone(path, max_prompt_length=4, projector_hidden_size=32, projector_heads=2,
                                               projector_layers=1).save_pretrained(tmp_path / "checkpoint")
    ICPTProcessor.from_backbone(path, max_prompt_length=4).save_pretrained(tmp_path / "checkpoint")
    bo = sorted(str(p) for p in (photos / "bo").iterdir())
    question = "Is <bo> in this photo?"
    done = run_example("quickstart.py", tmp_path / "checkpoint", "--label", "<bo>", "--photos", *bo, "--image",
                       tmp_path / "query.png", "--question", question, "--bank", tmp_path / "bo.safetensors",
                       cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    printed, reply = done.stdout, last_answer(done.stdout)
    assert f"<bo>: 2 photo(s) -> {ConceptBank.load(tmp_path / 'bo.safetensors').lengths['<bo>']} prompt token(s)" in printed
    assert f"Q: {question}\nA: {reply}" in printed
    # the same photos and question through `icpt encode` + `icpt ask` give the same answer
    only_bo = tmp_path / "only_bo"
    (only_bo / "bo").mkdir(parents=True)
    for p in bo:
        (only_bo / "bo" / Path(p).name).write_bytes(Path(p).read_bytes())
    assert icpt_main(["encode", str(only_bo), "-o", str(tmp_path / "cli.safetensors"), "--model", str(tmp_path / "checkpoint")]) == 0
    capsys.readouterr()
    assert icpt_main(["ask", str(tmp_path / "query.png"), question, "--bank", str(tmp_path / "cli.safetensors"),
                      "--model", str(tmp_path / "checkpoint"), "--max-new-tokens", "32"]) == 0
    assert capsys.readouterr().out.strip() == reply
