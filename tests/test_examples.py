"""The demonstration scripts in examples/, run as a user runs them (a subprocess of the script, this checkout on
`PYTHONPATH`) on tiny local stand-ins of the real backbones they are written for. The studies' library is tested in
test_studies.py, the cost benchmark's in test_costs.py, the backbone pretraining's in test_pretrain_world_backbone.py."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers.images import random_image
from icpt.commands.cli import main as icpt_main
from modeling_icpt import ConceptBank, ICPTForConditionalGeneration
from processing_icpt import ICPTProcessor

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(EXAMPLES.parent)}


def run_example(name: str, *arguments, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(EXAMPLES / name), *map(str, arguments)], capture_output=True,
                          text=True, env=ENV, cwd=cwd, timeout=600)


def last_answer(printed: str) -> str:
    """The answer a demonstration prints last ("Q: ...\nA: answer")."""
    return printed.rsplit("\nA: ", 1)[1].rstrip("\n")


@pytest.fixture
def photos(tmp_path):
    """my_photos/bo/ and my_photos/kiki/ with two photos each, and a query photo."""
    for c, label in enumerate(["bo", "kiki"]):
        (tmp_path / "my_photos" / label).mkdir(parents=True)
        for i in range(2):
            random_image(10 * c + i, size=(40 + 8 * i, 36)).save(tmp_path / "my_photos" / label / f"{i}.png")
    random_image(99).save(tmp_path / "query.png")
    return tmp_path / "my_photos"


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


def run_personalize(backbone, photos, tmp_path, *extra):
    return run_example(
        "personalize_real_checkpoint.py", "--backbone", backbone, "--photos", photos, "--image", tmp_path / "query.png",
        "--device", "cpu", "--dtype", "float32", "--train_steps", "2", "--batch_size", "2", "--max_prompt_length", "4",
        "--max_side", "48", "--output_dir", tmp_path / "out", *extra, cwd=tmp_path)


@pytest.mark.parametrize("family", ["qwen2_5_vl", pytest.param("llava", marks=pytest.mark.slow)])
def test_personalize_real_checkpoint_on_a_tiny_stand_in(family, tiny_backbone_dirs, photos, tmp_path):
    done = run_personalize(tiny_backbone_dirs[family], photos, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    printed, reply = done.stdout, last_answer(done.stdout)
    assert "<bo>: 2 photo(s)" in printed and "<kiki>: 2 photo(s)" in printed and f"A: {reply}" in printed
    trained = ICPTForConditionalGeneration.from_pretrained(tmp_path / "out" / "projector")
    assert trained.config.backbone_model_type == family
    assert ConceptBank.load(tmp_path / "out" / "concepts.safetensors").labels == ["<bo>", "<kiki>"]
    # second run: the trained projector is loaded instead of trained again, and answers the same
    again = run_personalize(tiny_backbone_dirs[family], photos, tmp_path, "--projector", tmp_path / "out" / "projector")
    assert again.returncode == 0, again.stderr[-3000:]
    assert last_answer(again.stdout) == reply


def test_personalize_needs_two_concepts_with_two_photos(tiny_backbone_dirs, photos, tmp_path):
    for extra in (photos / "kiki").iterdir():
        extra.unlink()
    (photos / "kiki").rmdir()
    done = run_personalize(tiny_backbone_dirs["qwen2_5_vl"], photos, tmp_path)
    assert done.returncode != 0 and "ValueError: Training on your photos needs at least 2 concepts" in done.stderr


@pytest.mark.slow
def test_train_script_runs_under_accelerate_launch(tiny_backbone_dirs, tmp_path):
    from helpers.episodes import make_episodes

    make_episodes(4).save_to_disk(tmp_path / "episodes")
    # the config as shipped, with the GPU settings overridden for this CPU-only machine
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(EXAMPLES / "accelerate_configs" / "multi_gpu.yaml"),
               "--cpu", "--num_processes", "1", "--mixed_precision", "no", str(EXAMPLES / "train_icpt.py"),
               "--backbone", str(tiny_backbone_dirs["llava"]), "--episodes", str(tmp_path / "episodes"),
               "--output_dir", str(tmp_path / "run"), "--max_steps", "2", "--per_device_train_batch_size", "2",
               "--max_prompt_length", "4", "--projector_hidden_size", "32", "--projector_heads", "2",
               "--projector_layers", "1", "--report_to", "none", "--save_strategy", "no", "--use_cpu", "true"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(EXAMPLES.parent)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "run" / "model.safetensors").is_file()
