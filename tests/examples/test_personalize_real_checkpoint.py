"""examples/personalize_real_checkpoint.py, run as a user runs it, on tiny local stand-ins of the real backbones."""

import pytest

from helpers.examples import last_answer, run_example
from modeling_icpt import ConceptBank, ICPTForConditionalGeneration


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
