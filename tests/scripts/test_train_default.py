"""scripts/train_default.sh: one command trains the method and every ablation, each differing in one part only."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]

# the training settings each output must carry: (decoupling_weight, separation_weight, identity_target_weight,
# reader_lora_rank, min_prompt_length); the reader stage trains without targets, so its weight reads 0 there
EXPECTED = {
    "projectors/icpt": (0.0, 0.0, 10.0, 0, 8),
    "projectors/icpt_with_decoupling": (0.1, 0.0, 10.0, 0, 8),
    "projectors/icpt_with_separation": (0.0, 1.0, 10.0, 0, 8),
    "projectors/icpt_no_identity_targets": (0.0, 0.0, 0.0, 0, 8),
    "readers/icpt": (0.0, 0.0, 0.0, 16, 8),
    "readers/icpt_with_decoupling": (0.1, 0.0, 0.0, 16, 8),
    "readers/icpt_with_separation": (0.0, 1.0, 0.0, 16, 8),
    "readers/icpt_no_identity_targets": (0.0, 0.0, 0.0, 16, 8),
    "readers/icpt_adaptive_length": (0.0, 0.0, 0.0, 16, 2),
}


@pytest.mark.slow
def test_one_command_trains_the_method_and_each_ablation_with_one_part_changed(tmp_path):
    out = tmp_path / "default"
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(out), "INSTALL": "0", "PROJECTOR_STEPS": "2",
           "READER_STEPS": "2", "TARGET_IDENTITIES": "2", "TARGET_STEPS": "2", "NUM_EPISODES": "32"}
    result = subprocess.run(["bash", str(ROOT / "scripts" / "train_default.sh")], env=env, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for run, expected in EXPECTED.items():
        config = json.loads((out / run / "config.json").read_text())
        found = tuple(config[key] for key in ("decoupling_weight", "separation_weight", "identity_target_weight",
                                              "reader_lora_rank", "min_prompt_length"))
        assert found == expected, run
        assert (out / run / "model.safetensors").is_file()
        # swapped twins are the reader stage's data (three per positive), the same for the method and every ablation
        settings = json.loads((out / run / "run_settings.json").read_text())
        assert settings["icpt"]["swapped_twins"] == (3 if run.startswith("readers/") else 0), run
    # the reader stage starts from phase 1's projectors, not from the shipped ones
    assert f"from {out / 'projectors' / 'icpt'} -> {out / 'readers' / 'icpt'}" in result.stdout
    timings = json.loads((out / "timings.json").read_text())
    assert set(timings) == {"projectors", "readers", "total"}
    assert timings["total"] >= timings["projectors"] + timings["readers"]

    # a second run resumes: every phase finds its work done and nothing is trained again
    again = subprocess.run(["bash", str(ROOT / "scripts" / "train_default.sh")], env=env, capture_output=True,
                           text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "rendering" not in again.stdout and "fitting identity targets" not in again.stdout

    # the recipe is deterministic: the same command into another folder gives every output bit for bit (at full size
    # it remade the shipped checkpoints, trained on other machines, docs/default_model.md, "One script"); the reader
    # stage moved its projector, so equal outputs are not merely untrained starting points
    start, trained = load_file(out / "projectors/icpt/model.safetensors"), load_file(out / "readers/icpt/model.safetensors")
    assert any(not torch.equal(start[key], trained[key]) for key in start.keys() & trained.keys())
    other = tmp_path / "again"
    rerun = subprocess.run(["bash", str(ROOT / "scripts" / "train_default.sh")], env={**env, "OUT": str(other)},
                           capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    for run in EXPECTED:
        first, second = load_file(out / run / "model.safetensors"), load_file(other / run / "model.safetensors")
        assert first.keys() == second.keys(), run
        assert all(torch.equal(first[key], second[key]) for key in first), run


def test_an_unknown_run_is_refused_before_anything_is_trained(tmp_path):
    # a typo in RUNS must not cost the identity targets' half hour first
    out = tmp_path / "projectors"
    result = subprocess.run(["bash", str(ROOT / "scripts/train_default_projectors.sh")], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "RUNS": "icpt icpt_with_decopling", "OUT": str(out)})
    assert result.returncode == 2
    assert "unknown run icpt_with_decopling" in result.stderr and "icpt_with_decoupling" in result.stderr
    assert not out.exists()


def test_a_run_on_another_backbone_installs_nothing(tmp_path):
    # what ships is trained on icpt/default/backbone: a pilot on another backbone must not overwrite it
    out = tmp_path / "pilot"
    result = subprocess.run(["bash", str(ROOT / "scripts/train_default.sh")], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "BACKBONE": str(tmp_path / "other_backbone"), "OUT": str(out)})
    assert result.returncode == 2
    assert "is a pilot: add INSTALL=0" in result.stderr
    assert not out.exists()
