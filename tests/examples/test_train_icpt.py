"""examples/train_icpt.py under `accelerate launch`."""

import os
import subprocess
import sys

import pytest

from helpers.examples import EXAMPLES


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
