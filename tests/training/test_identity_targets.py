"""Identity targets: fitting (resumable, training identities only), the file, the regression term and training with it."""

import json
import shutil

import numpy as np
import pytest
import torch

from helpers.examples import run_example
from icpt.commands import train as train_command
from icpt.training import identity_targets as targets_module
from icpt.training.identity_targets import (
    IdentityTargets,
    TargetReferences,
    fit_identity_targets,
    identity_order,
    merge_identity_targets,
)
from icpt.training.trainer import EpisodeCollator
from icpt.world.tasks import build_episodes
from icpt.world.world import world_for
from modeling_icpt import ICPTForConditionalGeneration
from processing_icpt import ICPTProcessor

ROWS = 4


class IdentityTargetsTester:
    """A tiny backbone folder with the world it stands for, a fresh projector and its processor."""

    def __init__(self, backbone_dir, tmp_path):
        self.backbone = tmp_path / "backbone"
        shutil.copytree(backbone_dir, self.backbone)
        (self.backbone / "world.json").write_text(json.dumps({"seed": 0, "num_identities": 40}))
        self.world = world_for(self.backbone)
        self.processor = ICPTProcessor.from_backbone(self.backbone, max_prompt_length=ROWS)
        self.model = ICPTForConditionalGeneration.from_backbone(
            self.backbone, prompt_token_id=self.processor.prompt_token_id, max_prompt_length=ROWS,
            min_prompt_length=1, projector_layers=1, projector_hidden_size=32, projector_heads=2,
            identity_target_weight=2.0)

    def targets(self, count=3, seed=0):
        identities = self.world.split("train")[:count]
        rows = torch.randn(count, ROWS, self.model.config.text_hidden_size, generator=torch.Generator().manual_seed(seed))
        return IdentityTargets(identities, rows, {"num_rows": ROWS})


@pytest.fixture
def tester(tiny_backbone_dirs, tmp_path):
    return IdentityTargetsTester(tiny_backbone_dirs["llava"], tmp_path)


def test_targets_file_round_trip_is_atomic_and_keeps_settings(tester, tmp_path):
    targets = tester.targets()
    path = tmp_path / "t" / "targets.safetensors"
    targets.save(path)
    assert not path.with_name(path.name + ".tmp").exists()
    loaded = IdentityTargets.load(path)
    assert loaded.identities == sorted(targets.identities) and loaded.settings == {"num_rows": ROWS}
    for k, identity in enumerate(targets.identities):
        assert torch.equal(loaded.rows[loaded.identities.index(identity)], targets.rows[k])
    with pytest.raises(FileNotFoundError, match="python examples/fit_identity_targets.py"):
        IdentityTargets.load(tmp_path / "missing.safetensors")


def test_held_out_identities_never_get_targets(tester, tmp_path):
    held_out = tester.world.split("held_out")[:1]
    with pytest.raises(ValueError, match="not training identities"):
        fit_identity_targets(tester.model, tester.processor, tester.world, held_out, tmp_path / "t.safetensors")
    leaked = IdentityTargets(held_out, torch.zeros(1, ROWS, 8), {})
    with pytest.raises(ValueError, match="outside the training split"):
        TargetReferences(leaked, tester.world, tester.processor)


def test_fitting_resumes_and_refuses_other_settings(tester, tmp_path, monkeypatch):
    fitted = []
    original = targets_module.scenes_of

    def counting_scenes(tasks, identity, count, positive, rng):
        assert {environment.set for environment in tasks.query_environments} == {"A"}  # set B stays out of training
        fitted.append((identity, positive))
        return original(tasks, identity, count, positive, rng)

    monkeypatch.setattr(targets_module, "scenes_of", counting_scenes)
    relabels = []
    train = targets_module.train_concept_prompts

    def recording_training(*args, relabel=None, **kwargs):
        relabels.append(relabel.random() if relabel is not None else None)  # a generator of the identity's own
        return train(*args, relabel=relabel, **kwargs)

    monkeypatch.setattr(targets_module, "train_concept_prompts", recording_training)
    identities = tester.world.split("train")[:3]
    path = tmp_path / "targets.safetensors"
    first = fit_identity_targets(tester.model, tester.processor, tester.world, identities[:2], path,
                                 num_rows=ROWS, steps=2, scenes=2, progress=False)
    assert first.identities == identities[:2] and first.rows.shape == (2, ROWS, tester.model.config.text_hidden_size)
    assert not torch.equal(first.rows[0], first.rows[1])  # each identity's own fit
    assert None not in relabels and len(set(relabels)) == 2  # fitted under random labels, its own draws
    assert first.settings["labels"] == "random" and first.settings["reader"] == "frozen"
    fitted.clear()
    both = fit_identity_targets(tester.model, tester.processor, tester.world, identities, path,
                                num_rows=ROWS, steps=2, scenes=2, progress=False)
    assert {identity for identity, _ in fitted} == {identities[2]}  # only the new identity was fitted
    assert torch.equal(both.rows[:2], first.rows) and len(IdentityTargets.load(path)) == 3
    with pytest.raises(ValueError, match="fitted with"):
        fit_identity_targets(tester.model, tester.processor, tester.world, identities, path,
                             num_rows=ROWS, steps=3, scenes=2, progress=False)


def test_fitting_refuses_a_model_with_a_reader_adapter(tester, tmp_path):
    # targets fitted through an adapter would depend on that checkpoint, not on the backbone alone
    tester.model.add_reader_adapter(rank=2)
    with pytest.raises(ValueError, match="reader adapter.*from_backbone"):
        fit_identity_targets(tester.model, tester.processor, tester.world, tester.world.split("train")[:1],
                             tmp_path / "t.safetensors", num_rows=ROWS, steps=1, scenes=1, progress=False)
    assert not (tmp_path / "t.safetensors").exists()


def test_the_fitting_script_fits_on_the_backbone_alone(tester, tmp_path):
    out = tmp_path / "targets.safetensors"
    result = run_example("fit_identity_targets.py", "--backbone", tester.backbone, "--output", out, "--identities", 2,
                         "--rows", ROWS, "--steps", 1, "--scenes", 1, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    fitted = IdentityTargets.load(out)
    assert fitted.identities == sorted(identity_order(tester.world, 2)) and fitted.settings["reader"] == "frozen"
    assert fitted.rows.shape == (2, ROWS, tester.model.config.text_hidden_size)
    # without --prompt_norm the rows start at the norm of the backbone's image tokens, which the file records
    image_norm = float(result.stdout.split("rows start at norm ")[1].split()[0])
    assert fitted.settings["prompt_norm"] == pytest.approx(image_norm, abs=1e-3)
    again = run_example("fit_identity_targets.py", "--backbone", tester.backbone, "--output", tmp_path / "t2.safetensors",
                        "--identities", 2, "--rows", ROWS, "--steps", 1, "--scenes", 1, "--prompt_norm", 3.5, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert IdentityTargets.load(tmp_path / "t2.safetensors").settings["prompt_norm"] == 3.5


def test_parts_merge_into_one_file(tester, tmp_path):
    targets = tester.targets(4)
    for part in (0, 1):
        IdentityTargets(targets.identities[part::2], targets.rows[part::2], targets.settings).save(tmp_path / f"p{part}.st")
    merged = merge_identity_targets([tmp_path / "p0.st", tmp_path / "p1.st"], tmp_path / "all.st")
    assert merged.identities == sorted(targets.identities) and len(IdentityTargets.load(tmp_path / "all.st")) == 4
    kept = merge_identity_targets([tmp_path / "p0.st", tmp_path / "p1.st"], tmp_path / "kept.st", keep=targets.identities[1:3])
    assert kept.identities == sorted(targets.identities[1:3])
    with pytest.raises(ValueError, match="let the fitting processes finish"):
        merge_identity_targets([tmp_path / "p0.st"], tmp_path / "short.st", keep=targets.identities)
    IdentityTargets(targets.identities[:1], targets.rows[:1], {"num_rows": 8}).save(tmp_path / "other.st")
    with pytest.raises(ValueError, match="was fitted with"):
        merge_identity_targets([tmp_path / "p0.st", tmp_path / "other.st"], tmp_path / "bad.st")


def test_identity_order_grows_by_adding_identities(tester):
    train = tester.world.split("train")
    assert identity_order(tester.world, 5) == identity_order(tester.world, len(train))[:5]
    assert set(identity_order(tester.world, len(train))) == set(train)
    with pytest.raises(ValueError, match="training split"):
        identity_order(tester.world, len(train) + 1)


def test_target_references_draw_photos_of_the_targets_identities(tester):
    targets = tester.targets(3)
    references = TargetReferences(targets, tester.world, tester.processor, batch_size=2, max_references=3, photos=4)
    batch = references.draw(np.random.default_rng(0))
    again = references.draw(np.random.default_rng(0))
    assert batch["target_rows"].shape == (2, ROWS, tester.model.config.text_hidden_size)
    assert torch.equal(batch["target_concept_name_ids"], again["target_concept_name_ids"])
    assert torch.equal(batch["target_reference_pixel_values"], again["target_reference_pixel_values"])
    counts = torch.bincount(batch["target_reference_concept_index"], minlength=2)
    assert counts.min() >= 1 and counts.max() <= 3
    # the rows belong to the identities whose photos were drawn: the draw's first identity is one of the targets
    assert any(torch.equal(batch["target_rows"][0], row) for row in targets.rows)


def test_forward_adds_the_weighted_target_loss_and_trains_the_projector(tester):
    episodes = build_episodes(tester.world, "train", num_episodes=4, seed=0, tasks=("recognition",))
    references = TargetReferences(tester.targets(3), tester.world, tester.processor, batch_size=2)
    collator = EpisodeCollator(tester.processor, 1, ROWS, target_references=references)
    rows = [episodes[i] for i in range(4)]
    batch = collator(rows)
    assert torch.equal(batch["target_rows"], collator(rows)["target_rows"])  # the same episodes draw the same targets
    out = tester.model(**batch)
    expected = (out.lm_loss + tester.model.config.decoupling_weight * out.decoupling_loss
                + tester.model.config.separation_weight * out.separation_loss + 2.0 * out.identity_target_loss)
    torch.testing.assert_close(out.loss, expected)
    tester.model.zero_grad()
    target_only = {k[len("target_"):]: v for k, v in batch.items() if k.startswith("target_")}
    tester.model.identity_target_loss(**target_only).backward()
    assert tester.model.projector.queries.grad.abs().sum() > 0
    assert all(p.grad is None for p in tester.model.vlm.parameters())  # the backbone stays frozen
    wrong = dict(target_only, rows=target_only["rows"][:, :2])
    with pytest.raises(ValueError, match="--rows equal to the projector's max_prompt_length"):
        tester.model.identity_target_loss(**wrong)


def test_training_with_targets_logs_the_term_and_records_its_weight(tester, tmp_path):
    build_episodes(tester.world, "train", num_episodes=8, seed=0, tasks=("recognition",)).save_to_disk(tmp_path / "episodes")
    tester.targets(3).save(tmp_path / "targets.safetensors")
    args = ["--backbone", str(tester.backbone), "--episodes", str(tmp_path / "episodes"),
            "--output_dir", str(tmp_path / "run"), "--max_prompt_length", str(ROWS), "--min_prompt_length", "1",
            "--projector_hidden_size", "32", "--projector_heads", "2", "--projector_layers", "1",
            "--per_device_train_batch_size", "4", "--max_steps", "2", "--logging_steps", "1", "--report_to", "none",
            "--use_cpu", "true", "--save_strategy", "no", "--identity_targets", str(tmp_path / "targets.safetensors"),
            "--identity_target_weight", "3", "--identity_target_batch", "2"]
    trainer = train_command.main(args)
    logged = [entry for entry in trainer.state.log_history if "identity_target_loss" in entry]
    assert len(logged) == 2 and all(entry["identity_target_loss"] > 0 for entry in logged)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["identity_target_weight"] == 3.0
    with pytest.raises(ValueError, match="identity_target_weight > 0"):
        train_command.main(args[:-4] + ["--identity_target_weight", "0", "--identity_target_batch", "2"])
    IdentityTargets(tester.world.split("train")[:1], torch.zeros(1, 2, 8), {}).save(tmp_path / "narrow.st")
    with pytest.raises(ValueError, match="fit targets with --rows 4"):
        train_command.main(args[:-5] + [str(tmp_path / "narrow.st"), "--identity_target_weight", "3"])


def test_training_without_targets_logs_no_target_term(tester, tmp_path):
    build_episodes(tester.world, "train", num_episodes=4, seed=0, tasks=("recognition",)).save_to_disk(tmp_path / "episodes")
    trainer = train_command.main(["--backbone", str(tester.backbone), "--episodes", str(tmp_path / "episodes"),
                               "--output_dir", str(tmp_path / "run"), "--max_prompt_length", str(ROWS),
                               "--projector_hidden_size", "32", "--projector_heads", "2", "--projector_layers", "1",
                               "--per_device_train_batch_size", "4", "--max_steps", "1", "--logging_steps", "1",
                               "--report_to", "none", "--use_cpu", "true", "--save_strategy", "no"])
    assert any("lm_loss" in entry for entry in trainer.state.log_history)
    assert not any("identity_target_loss" in entry for entry in trainer.state.log_history)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["identity_target_weight"] == 0.0


def test_interrupted_training_with_targets_resumes_to_the_same_weights(tester, tmp_path):
    from helpers.training import training_stops_at

    build_episodes(tester.world, "train", num_episodes=8, seed=0, tasks=("recognition",)).save_to_disk(tmp_path / "episodes")
    tester.targets(3).save(tmp_path / "targets.safetensors")

    def args(output, *extra):
        return ["--backbone", str(tester.backbone), "--episodes", str(tmp_path / "episodes"), "--output_dir", str(output),
                "--max_prompt_length", str(ROWS), "--min_prompt_length", "1", "--projector_hidden_size", "32",
                "--projector_heads", "2", "--projector_layers", "1", "--per_device_train_batch_size", "4",
                "--max_steps", "4", "--save_steps", "2", "--learning_rate", "3e-3", "--report_to", "none", "--seed", "0",
                "--use_cpu", "true", "--dataloader_num_workers", "0", "--identity_targets",
                str(tmp_path / "targets.safetensors"), "--identity_target_weight", "3", "--identity_target_batch", "2",
                *extra]

    whole = train_command.main(args(tmp_path / "whole"))
    expected = {k: v.clone() for k, v in whole.model.projector.state_dict().items()}
    with training_stops_at(2):
        assert train_command.main(args(tmp_path / "resumed")).state.global_step == 2
    resumed = train_command.main(args(tmp_path / "resumed", "--resume_from_checkpoint", "latest"))
    assert resumed.state.global_step == 4
    for name, tensor in resumed.model.projector.state_dict().items():
        assert torch.allclose(tensor, expected[name], rtol=0, atol=1e-6), name
