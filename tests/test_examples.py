"""The examples in examples/, run here on tiny local stand-ins of the real backbones they are written for."""

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
sys.path.insert(0, str(EXAMPLES))
import held_out_identities  # noqa: E402
import personalize_real_checkpoint  # noqa: E402
import per_identity_rows  # noqa: E402
import pooled_image_tokens  # noqa: E402
import reference_sensitivity  # noqa: E402
import quickstart  # noqa: E402


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
    reply = quickstart.main([str(tmp_path / "checkpoint"), "--label", "<bo>", "--photos", *bo, "--image",
                             str(tmp_path / "query.png"), "--question", question, "--bank", str(tmp_path / "bo.safetensors")])
    printed = capsys.readouterr().out
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
    return personalize_real_checkpoint.main([
        "--backbone", str(backbone), "--photos", str(photos), "--image", str(tmp_path / "query.png"),
        "--device", "cpu", "--dtype", "float32", "--train_steps", "2", "--batch_size", "2", "--max_prompt_length", "4",
        "--max_side", "48", "--output_dir", str(tmp_path / "out"), *extra])


@pytest.mark.parametrize("family", ["qwen2_5_vl", pytest.param("llava", marks=pytest.mark.slow)])
def test_personalize_real_checkpoint_on_a_tiny_stand_in(family, tiny_backbone_dirs, photos, tmp_path, capsys):
    reply = run_personalize(tiny_backbone_dirs[family], photos, tmp_path)
    printed = capsys.readouterr().out
    assert "<bo>: 2 photo(s)" in printed and "<kiki>: 2 photo(s)" in printed and f"A: {reply}" in printed
    trained = ICPTForConditionalGeneration.from_pretrained(tmp_path / "out" / "projector")
    assert trained.config.backbone_model_type == family
    assert ConceptBank.load(tmp_path / "out" / "concepts.safetensors").labels == ["<bo>", "<kiki>"]
    # second run: the trained projector is loaded instead of trained again, and answers the same
    again = run_personalize(tiny_backbone_dirs[family], photos, tmp_path, "--projector", str(tmp_path / "out" / "projector"))
    assert again == reply


def test_personalize_needs_two_concepts_with_two_photos(tiny_backbone_dirs, photos, tmp_path):
    for extra in (photos / "kiki").iterdir():
        extra.unlink()
    (photos / "kiki").rmdir()
    with pytest.raises(ValueError, match="at least 2 concepts"):
        run_personalize(tiny_backbone_dirs["qwen2_5_vl"], photos, tmp_path)


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


def test_pooled_rows_average_photos_then_grid_cells():
    tokens = torch.arange(2 * 16 * 3, dtype=torch.float).reshape(2, 16, 3)  # 2 photos, a 4 x 4 grid, width 3
    mean = tokens.mean(0)
    torch.testing.assert_close(pooled_image_tokens.pooled_rows(tokens, 1), mean.mean(0, keepdim=True))
    four = pooled_image_tokens.pooled_rows(tokens, 4)
    torch.testing.assert_close(four[0], mean[[0, 1, 4, 5]].mean(0))  # the top-left 2 x 2 cell
    torch.testing.assert_close(pooled_image_tokens.pooled_rows(tokens, 16), mean)


def test_pooled_rows_per_reference_keep_one_block_per_photo():
    tokens = torch.arange(2 * 16 * 3, dtype=torch.float).reshape(2, 16, 3)  # 2 photos, a 4 x 4 grid, width 3
    one = pooled_image_tokens.pooled_rows(tokens, 1, "per-reference")
    torch.testing.assert_close(one, tokens.mean(1))  # one row per photo, not their average
    four = pooled_image_tokens.pooled_rows(tokens, 4, "per-reference")
    assert four.shape == (8, 3)
    torch.testing.assert_close(four[4], tokens[1, [0, 1, 4, 5]].mean(0))  # the second photo's top-left cell
    torch.testing.assert_close(pooled_image_tokens.pooled_rows(tokens, 16, "per-reference"), tokens.reshape(32, 3))


def test_pooled_image_tokens_runs_on_the_embedded_default(capsys):
    assert pooled_image_tokens.main(["--episodes", "2", "--rows", "1", "4"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("pooled rows per concept: weighted") == 2 and "2 held-out recognition episodes" in printed
    assert "every concept of the episode" in printed


def test_pooled_image_tokens_per_reference_target_only_without_look_alikes(capsys):
    assert pooled_image_tokens.main(["--episodes", "6", "--rows", "4", "--layout", "per-reference",
                                     "--target-only", "--skip-look-alikes"]) == 0
    printed = capsys.readouterr().out
    kept = int(printed.split(" held-out recognition episodes")[0].split()[-1])
    assert kept == 4  # the 6 episodes drawn with the default seed hold 2 look-alike ones
    assert "the asked concept only" in printed and "pooled rows per reference photo: weighted" in printed


def test_per_identity_rows_runs_on_the_embedded_default(capsys):
    for relabel in ([], ["--relabel"]):
        weighted = per_identity_rows.main(["--rows", "2", "--steps", "2", "--identities", "3", "--train-scenes", "2",
                                           "--test-scenes", "1", *relabel])
        printed = capsys.readouterr().out
        assert list(weighted) == list(per_identity_rows.READINGS)
        for reading, value in weighted.items():
            assert min(abs(6 * value - k) for k in range(7)) < 1e-9  # 3 identities x one scene with, one without
            assert f"read under {reading}: weighted {value:.3f}" in printed
        fitted = "under a new label each step" if relabel else "under <w1>"
        assert f"2 rows trained per identity (2 steps on 4 scenes, {fitted})" in printed and "training loss" in printed
    with pytest.raises(SystemExit):
        per_identity_rows.main(["--identities", "2"])


def test_held_out_identities_runs_on_the_embedded_default(capsys):
    results = held_out_identities.main(["--identities", "2", "--scenes", "1", "--episodes", "2"])
    printed = capsys.readouterr().out
    score = results[str(held_out_identities.DEFAULT_MODEL)]
    assert score["identity_protocol"] in (0.0, 0.25, 0.5, 0.75, 1.0)  # 2 identities x one scene with, one without
    assert f"identity protocol {score['identity_protocol']:.3f}" in printed and "2 identities x 2 scenes" in printed
    assert "2 episodes" in printed
    with pytest.raises(SystemExit):
        held_out_identities.main(["--identities", "0", "--episodes", "0"])


def test_reference_sensitivity_runs_on_the_embedded_default(capsys):
    unchanged = reference_sensitivity.main(["--episodes", "3"])
    printed = capsys.readouterr().out
    assert 0 <= unchanged <= 3 and f"{unchanged}/3 recognition answers unchanged" in printed
    assert "with own photos" in printed and "with swapped photos" in printed
    reference_sensitivity.main(["--episodes", "2", "--task", "attribute"])
    assert "exact-match attribute accuracy with own photos" in capsys.readouterr().out
    with pytest.raises(ValueError, match="at least 2 episodes"):
        reference_sensitivity.main(["--episodes", "1"])
