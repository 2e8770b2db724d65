"""One training run (icpt/training/run.py, through `icpt train`'s arguments): short runs, resuming, evaluation
during training, gradient checkpointing."""

import json
from pathlib import Path

import pytest
import torch
from datasets import load_from_disk
from safetensors.torch import load_file

from helpers.episodes import make_episodes
from helpers.images import random_image
from helpers.training import training_stops_at
from icpt.commands import train as train_command
from icpt.training.trainer import EpisodeCollator
from modeling_icpt import ICPTForConditionalGeneration


def _train_args(tmp_path, *extra):
    return ["--backbone", str(extra[0]), "--episodes", str(tmp_path / "episodes"), "--output_dir", str(tmp_path / "run"),
            "--max_prompt_length", "4", "--min_prompt_length", "1", "--projector_hidden_size", "32",
            "--projector_heads", "2", "--projector_layers", "1", "--per_device_train_batch_size", "4",
            "--learning_rate", "3e-3", "--logging_steps", "1", "--report_to", "none", "--seed", "0",
            "--use_cpu", "true", "--dataloader_num_workers", "0", "--save_strategy", "steps", *extra[1:]]


@pytest.fixture
def sensitive_backbone(setup, tmp_path):
    """The tiny llava with its LM weights drawn 10x wider: at the usual 0.02 init a 2-layer random LM's
    output barely depends on its input, so no prompt could move its loss; a trained LM's does."""
    from transformers import AutoModelForImageTextToText

    path, processor = setup
    torch.manual_seed(0)
    vlm = AutoModelForImageTextToText.from_pretrained(path)
    with torch.no_grad():
        for name, p in vlm.named_parameters():
            if "language_model" in name and p.dim() == 2:
                p.mul_(10)
    vlm.save_pretrained(tmp_path / "backbone")
    processor.tokenizer.save_pretrained(tmp_path / "backbone")
    for file in Path(path).iterdir():
        if not (tmp_path / "backbone" / file.name).exists():
            (tmp_path / "backbone" / file.name).write_bytes(file.read_bytes())
    return tmp_path / "backbone"


def test_short_training_run_lowers_the_loss_and_changes_only_the_projector(setup, sensitive_backbone, tmp_path):
    _, processor = setup
    path = sensitive_backbone
    make_episodes(8).save_to_disk(tmp_path / "episodes")
    episodes = load_from_disk(tmp_path / "episodes")
    batch = EpisodeCollator(processor, 1, 4)([episodes[i] for i in range(8)])
    trainer = train_command.main(_train_args(tmp_path, path, "--max_steps", "60", "--save_steps", "100"))
    model = trainer.model
    # background-only views are rendered exactly when L_dec reads them
    assert trainer.data_collator.background_views == (model.config.decoupling_weight > 0)
    backbone_before = ICPTForConditionalGeneration.from_backbone(path, max_prompt_length=4).vlm.state_dict()
    for name, tensor in model.vlm.state_dict().items():
        assert torch.equal(tensor, backbone_before[name]), name
    fresh = ICPTForConditionalGeneration.from_backbone(path, max_prompt_length=4, min_prompt_length=1,
                                                       projector_hidden_size=32, projector_heads=2, projector_layers=1)
    torch.manual_seed(0)
    with torch.no_grad():
        trained_loss, initial_loss = model.eval()(**batch).loss, fresh(**batch).loss
    assert trained_loss < initial_loss - 0.1, (float(initial_loss), float(trained_loss))
    logged = [entry for entry in trainer.state.log_history if "lm_loss" in entry]
    assert logged and all({"lm_loss", "decoupling_loss", "separation_loss"} <= entry.keys() for entry in logged)
    saved = load_file(tmp_path / "run" / "model.safetensors")
    assert saved and all(key.startswith("projector.") for key in saved)
    assert (tmp_path / "run" / "processor_config.json").exists()


def test_resumed_training_ends_with_the_same_weights(setup, tmp_path):
    path, _ = setup
    make_episodes(8).save_to_disk(tmp_path / "episodes")
    steps = ["--max_steps", "6", "--save_steps", "3"]
    whole = train_command.main(_train_args(tmp_path, path, *steps, "--output_dir", str(tmp_path / "whole")))
    expected = {k: v.clone() for k, v in whole.model.projector.state_dict().items()}

    with training_stops_at(3):
        stopped = train_command.main(_train_args(tmp_path, path, *steps, "--output_dir", str(tmp_path / "resumed")))
    assert stopped.state.global_step == 3
    resumed = train_command.main(_train_args(tmp_path, path, *steps, "--output_dir", str(tmp_path / "resumed"),
                                          "--resume_from_checkpoint", "latest"))
    assert resumed.state.global_step == 6
    for name, tensor in resumed.model.projector.state_dict().items():
        assert torch.allclose(tensor, expected[name], rtol=0, atol=1e-6), (name, float((tensor - expected[name]).abs().max()))


def test_a_reader_adapter_trains_saves_loads_and_resumes_with_the_projector(setup, tmp_path, images):
    path, processor = setup
    make_episodes(8).save_to_disk(tmp_path / "episodes")
    steps = ["--max_steps", "6", "--save_steps", "3", "--reader_lora_rank", "4"]
    whole = train_command.main(_train_args(tmp_path, path, *steps, "--output_dir", str(tmp_path / "whole")))
    trained = whole.model.trained_state_dict()
    adapter = {k: v for k, v in trained.items() if k.startswith("reader_adapter.")}
    assert adapter and any(v.abs().sum() > 0 for k, v in adapter.items() if ".lora_B." in k)  # it learned
    backbone = ICPTForConditionalGeneration.from_backbone(path, max_prompt_length=4).vlm.state_dict()
    for name, tensor in whole.model.vlm.state_dict().items():  # the backbone's own weights never move
        if ".lora_" not in name:
            assert torch.equal(tensor, backbone[name.replace(".base_layer", "")]), name
    saved = load_file(tmp_path / "whole" / "model.safetensors")
    assert saved.keys() == trained.keys() and all(k.startswith(("projector.", "reader_adapter.")) for k in saved)

    # one checkpoint: loading it restores projector and adapter, and answers as the trained model does
    loaded = ICPTForConditionalGeneration.from_pretrained(tmp_path / "whole").eval()
    inputs = processor(text=["<image>Is <bo> here?"], images=[[images[0]]], references={"<bo>": images[1:3]})
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, whole.model.eval()(**inputs).logits)

    with training_stops_at(3):
        train_command.main(_train_args(tmp_path, path, *steps, "--output_dir", str(tmp_path / "resumed")))
    resumed = train_command.main(_train_args(tmp_path, path, *steps, "--output_dir", str(tmp_path / "resumed"),
                                          "--resume_from_checkpoint", "latest"))
    for name, tensor in resumed.model.trained_state_dict().items():
        assert torch.allclose(tensor, trained[name], rtol=0, atol=1e-6), name


def test_rerunning_a_finished_run_changes_nothing(setup, tmp_path):
    path, _ = setup
    make_episodes(8).save_to_disk(tmp_path / "episodes")
    # 3 steps end inside the second epoch (8 episodes, 4 per batch), where Trainer's resume ran one step more
    args = _train_args(tmp_path, path, "--max_steps", "3", "--save_steps", "2", "--output_dir", str(tmp_path / "run"))
    finished = train_command.main(args)
    expected = {k: v.clone() for k, v in finished.model.projector.state_dict().items()}
    again = train_command.main(args + ["--resume_from_checkpoint", "latest"])
    assert again.state.global_step == 3
    for name, tensor in again.model.projector.state_dict().items():
        assert torch.equal(tensor, expected[name]), name


def test_resuming_a_run_started_with_other_settings_is_refused(setup, tmp_path):
    path, _ = setup
    make_episodes(8).save_to_disk(tmp_path / "episodes")
    args = _train_args(tmp_path, path, "--max_steps", "2", "--save_steps", "2", "--output_dir", str(tmp_path / "run"))
    train_command.main(args)
    recorded = json.loads((tmp_path / "run" / "run_settings.json").read_text())
    assert recorded["icpt"]["separation_weight"] == 0.0 and recorded["training"]["learning_rate"] == 3e-3
    with pytest.raises(ValueError, match=r"icpt\.separation_weight, training\.learning_rate differ"):
        train_command.main(args + ["--separation_weight", "1", "--learning_rate", "1e-3", "--resume_from_checkpoint", "latest"])
    # a checkpoint from before runs recorded their settings: nothing to check it against
    (tmp_path / "run" / "run_settings.json").unlink()
    with pytest.raises(ValueError, match="without run_settings.json.*new --output_dir"):
        train_command.main(args + ["--resume_from_checkpoint", "latest"])
    # a longer run may continue a finished one
    train_command.main(args)
    extended = train_command.main(_train_args(tmp_path, path, "--max_steps", "3", "--save_steps", "2", "--output_dir",
                                           str(tmp_path / "run"), "--resume_from_checkpoint", "latest"))
    assert extended.state.global_step == 3


def test_fresh_projector_starts_at_the_image_token_norm(setup, tmp_path):
    path, processor = setup
    model = ICPTForConditionalGeneration.from_backbone(path, prompt_token_id=processor.prompt_token_id, max_prompt_length=4)
    photos = [random_image(500 + i) for i in range(3)]
    inputs = processor(messages=[[{"role": "user", "content": [{"type": "image"}]}]] * 3, images=[[p] for p in photos])
    # what the LM receives, read independently of the method: the language model's inputs_embeds
    captured = {}
    hook = model.vlm.model.language_model.register_forward_pre_hook(
        lambda module, args, kwargs: captured.update(embeds=kwargs["inputs_embeds"]), with_kwargs=True)
    model.vlm(**{k: v for k, v in inputs.items() if k not in ("prompt_concepts", "concept_names")})
    hook.remove()
    image = inputs["input_ids"] == model.vlm.config.image_token_id
    expected = float(captured["embeds"][image].norm(dim=-1).median())
    assert model.match_image_token_norm(**inputs) == pytest.approx(expected, rel=1e-5)
    assert model.config.prompt_norm == pytest.approx(expected, rel=1e-5)
    bank = model.encode_concepts(**processor.prepare_references({"<bo>": photos[:2]}))
    assert not bank.prompts.requires_grad  # encoding a concept builds no autograd graph
    rows = bank.rows("<bo>")
    assert torch.allclose(rows.norm(dim=-1), torch.full((len(rows),), expected), rtol=1e-4)
    with pytest.raises(ValueError, match="must be positive"):
        model.set_prompt_norm(0.0)
    with pytest.raises(ValueError, match="at least one image"):
        model.match_image_token_norm(**processor(text="no photo here"))

    make_episodes(8).save_to_disk(tmp_path / "episodes")
    trained = train_command.main(_train_args(tmp_path, path, "--max_steps", "1", "--output_dir", str(tmp_path / "run")))
    assert trained.model.config.prompt_norm != pytest.approx(model.vlm.get_input_embeddings().weight.norm(dim=-1).median().item())
    given = train_command.main(_train_args(tmp_path, path, "--max_steps", "1", "--prompt_norm", "2.5",
                                        "--output_dir", str(tmp_path / "given")))
    assert given.model.config.prompt_norm == 2.5


def test_evaluation_during_training_reports_weighted_recognition_and_keeps_the_best(setup, tmp_path):
    path, processor = setup
    make_episodes(8).save_to_disk(tmp_path / "episodes")
    held_out = make_episodes(8).filter(lambda row: row["task"] == "recognition")
    held_out.save_to_disk(tmp_path / "held_out")
    trainer = train_command.main(_train_args(
        tmp_path, path, "--max_steps", "4", "--save_steps", "2", "--eval_strategy", "steps", "--eval_steps", "2",
        "--eval_episodes", str(tmp_path / "held_out"), "--load_best_model_at_end", "true",
        "--metric_for_best_model", "recognition_weighted", "--per_device_eval_batch_size", "3"))
    evaluations = [entry for entry in trainer.state.log_history if "eval_recognition_weighted" in entry]
    assert [entry["step"] for entry in evaluations] == [2, 4]
    positives = sum(answer == "Yes" for answer in held_out["answer"])
    for entry in evaluations:
        assert entry["eval_recognition_questions"] == len(held_out)
        assert 0.0 <= entry["eval_recognition_weighted"] <= 1.0
        # the weighted accuracy is the mean of the yes-rate on positives and the no-rate on negatives
        assert entry["eval_recognition_weighted"] == pytest.approx(
            0.5 * entry["eval_recognition_positive"] + 0.5 * entry["eval_recognition_negative"])
        assert {round(entry["eval_recognition_positive"] * positives, 6) % 1} <= {0.0}
    best = max(evaluations, key=lambda entry: entry["eval_recognition_weighted"])
    assert trainer.state.best_model_checkpoint.endswith(f"checkpoint-{best['step']}")
    kept = load_file(Path(trainer.state.best_model_checkpoint) / "model.safetensors")
    for name, tensor in trainer.model.trained_state_dict().items():  # the best checkpoint's weights, reloaded
        assert torch.equal(tensor, kept[name]), name


def test_evaluation_episodes_need_a_schedule(setup, tmp_path):
    path, _ = setup
    make_episodes(4).save_to_disk(tmp_path / "episodes")
    with pytest.raises(ValueError, match="--eval_strategy steps"):
        train_command.main(_train_args(tmp_path, path, "--max_steps", "1", "--eval_episodes", str(tmp_path / "episodes")))


def test_gradient_checkpointing_recomputes_the_backbone_and_gives_the_same_weights(setup, tmp_path):
    path, _ = setup
    make_episodes(8).save_to_disk(tmp_path / "episodes")
    runs = {}
    for flag in ("false", "true"):
        runs[flag] = train_command.main(_train_args(tmp_path, path, "--max_steps", "2", "--save_strategy", "no",
                                                 "--reader_lora_rank", "2", "--activation_checkpointing", flag,
                                                 "--output_dir", str(tmp_path / flag)))
    layers = [m for m in runs["true"].model.vlm.modules() if hasattr(m, "gradient_checkpointing")]
    assert layers and all(m.gradient_checkpointing for m in layers)
    assert not any(m.gradient_checkpointing for m in runs["false"].model.vlm.modules() if hasattr(m, "gradient_checkpointing"))
    plain, checkpointed = (runs[flag].model.trained_state_dict() for flag in ("false", "true"))
    for name, tensor in plain.items():
        torch.testing.assert_close(checkpointed[name], tensor, rtol=0, atol=1e-6)


def test_swapped_twins_join_the_training_episodes_and_an_older_run_resumes_at_their_default(setup, tmp_path):
    from icpt.world.tasks import build_episodes
    from icpt.world.world import World

    path, _ = setup
    episodes = build_episodes(World(num_identities=60), "train", num_episodes=8, tasks=("recognition",))
    episodes.save_to_disk(tmp_path / "episodes")
    positives = sum(e["target"] in e["present"] for e in episodes)
    assert 0 < positives < len(episodes)
    args = _train_args(tmp_path, path, "--max_steps", "2", "--save_steps", "2", "--swapped_twins", "2")
    train_command.main(args)
    recorded = json.loads((tmp_path / "run" / "run_settings.json").read_text())
    assert recorded["icpt"]["swapped_twins"] == 2 and recorded["episodes"] == len(episodes) + 2 * 2 * positives
    # a run recorded before the option existed was trained without twins: it resumes without them, not with them
    plain = _train_args(tmp_path, path, "--max_steps", "2", "--save_steps", "2", "--output_dir", str(tmp_path / "old"))
    train_command.main(plain)
    recorded = json.loads((tmp_path / "old" / "run_settings.json").read_text())
    del recorded["icpt"]["swapped_twins"]
    (tmp_path / "old" / "run_settings.json").write_text(json.dumps(recorded))
    longer = ["--max_steps", "3", "--save_steps", "2", "--output_dir", str(tmp_path / "old"), "--resume_from_checkpoint", "latest"]
    assert train_command.main(_train_args(tmp_path, path, *longer)).state.global_step == 3
    with pytest.raises(ValueError, match=r"icpt\.swapped_twins differ"):
        train_command.main(_train_args(tmp_path, path, *longer, "--swapped_twins", "1"))
