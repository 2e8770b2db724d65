"""`icpt train` (icpt/commands/train.py) as a user runs it: continuing a checkpoint, a fresh projector, and under
`accelerate launch` with two CPU processes (DDP over gloo): the same loss curve as one process at the same global
batch, a resumed two-process run that ends where an uninterrupted one does, FSDP, the shipped accelerate configs
and the README's training commands."""

import ast
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers.cli import MAX_NEW_TOKENS
from helpers.episodes import make_episodes
from helpers.images import random_image
from icpt.commands.cli import main
from modeling_icpt import ICPTForConditionalGeneration
from processing_icpt import ICPTProcessor

ROOT = Path(__file__).resolve().parents[2]
STEPS = 4


def _free_port() -> int:
    """A free port below Linux's ephemeral range (32768+): a port the kernel hands out for `bind(0)` can be handed
    out again, to gloo's own connections, between this probe and the launcher's bind."""
    import random

    for port in random.Random().sample(range(20000, 32000), 200):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("No free port in 20000-32000 for the test's process group.")


def _launch(command: list[str]) -> subprocess.CompletedProcess:
    """Run a (multi-process) command on one thread per process, without GPUs; a launch that hangs for 300 s (a run
    takes ~15 s) is aborted with SIGABRT, so that every process's faulthandler prints where it waits, and the test
    fails with those stacks."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT),
           "PYTHONFAULTHANDLER": "1"}
    launched = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    try:
        stdout, stderr = launched.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(launched.pid, signal.SIGABRT)
        stdout, stderr = launched.communicate()
        pytest.fail(f"{' '.join(command[:8])} ... hung for 300 s; the processes' stacks:\n{stderr[-6000:]}")
    return subprocess.CompletedProcess(command, launched.returncode, stdout, stderr)


def _train(backbone, episodes, output, processes: int, batch: int, *extra) -> list[dict]:
    """Run examples/train_icpt.py in `processes` processes; the logged training entries, in order."""
    args = ["examples/train_icpt.py", "--backbone", str(backbone), "--episodes", str(episodes), "--output_dir", str(output),
            "--max_prompt_length", "4", "--min_prompt_length", "1", "--projector_hidden_size", "32",
            "--projector_heads", "2", "--projector_layers", "1", "--per_device_train_batch_size", str(batch),
            "--learning_rate", "3e-3", "--logging_steps", "1", "--report_to", "none", "--seed", "0", "--use_cpu", "true",
            "--dataloader_num_workers", "0", "--max_steps", str(STEPS), "--save_steps", "2", *extra]
    if processes == 1:
        command = [sys.executable, *args]
    else:  # accelerate's multi-process launcher (torchrun underneath); on CPU the processes talk over gloo
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
                   "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                   "--main_process_port", str(_free_port()), *args]
    done = _launch(command)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "terminate called" not in done.stderr  # every process left its process group before exiting
    logs = [ast.literal_eval(match) for match in re.findall(r"\{'loss'.*?\}", done.stdout + done.stderr)]
    return [{k: float(v) for k, v in entry.items()} for entry in logs]


@pytest.fixture(scope="module")
def data(tiny_backbone_dirs, tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    make_episodes(16).save_to_disk(root / "episodes")
    return tiny_backbone_dirs["llava"], root / "episodes", root


def test_two_processes_follow_the_loss_curve_of_one_at_the_same_global_batch(data):
    backbone, episodes, root = data
    # the regularizers are computed within each process's batch (pairs among 2 episodes, not 4): off here, so the
    # two runs optimize the same objective
    plain = ("--decoupling_weight", "0", "--separation_weight", "0")
    one = _train(backbone, episodes, root / "one", 1, 4, *plain)
    two = _train(backbone, episodes, root / "two_plain", 2, 2, *plain)
    assert len(one) == len(two) == STEPS
    for step, (a, b) in enumerate(zip(one, two), start=1):
        assert b["epoch"] == a["epoch"] == step / 4  # 16 episodes, 4 per optimizer step in both runs
        for term in ("loss", "lm_loss"):
            assert b[term] == pytest.approx(a[term], rel=2e-3, abs=2e-4), (step, term)
    weights_one, weights_two = (load_file(root / run / "model.safetensors") for run in ("one", "two_plain"))
    for name, tensor in weights_one.items():
        torch.testing.assert_close(weights_two[name], tensor, rtol=1e-3, atol=1e-4)


def test_an_interrupted_two_process_run_resumes_to_the_same_weights(data):
    backbone, episodes, root = data
    _train(backbone, episodes, root / "two", processes=2, batch=2)
    resumed = root / "resumed"
    shutil.copytree(root / "two", resumed)
    # what an interruption after step 2 leaves: the step-2 checkpoint and the run's settings
    shutil.rmtree(resumed / f"checkpoint-{STEPS}")
    for leftover in resumed.iterdir():
        if leftover.is_file() and leftover.name != "run_settings.json":
            leftover.unlink()
    logs = _train(backbone, episodes, resumed, 2, 2, "--resume_from_checkpoint", "latest")
    assert [entry["epoch"] for entry in logs] == [0.75, 1.0]  # steps 3 and 4 only
    expected, got = (load_file(run / "model.safetensors") for run in (root / "two", resumed))
    for name, tensor in expected.items():
        torch.testing.assert_close(got[name], tensor, rtol=0, atol=1e-6)


CONFIGS = ROOT / "examples" / "accelerate_configs"


def test_the_shipped_accelerate_configs_are_valid():
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.utils import DistributedType, PrecisionType

    configs = {path.stem: ClusterConfig.from_yaml_file(path) for path in sorted(CONFIGS.glob("*.yaml"))}  # unknown keys refused
    assert set(configs) == {"single_gpu", "multi_gpu", "fsdp"}
    assert configs["single_gpu"].distributed_type == DistributedType.NO and configs["single_gpu"].num_processes == 1
    assert configs["multi_gpu"].distributed_type == DistributedType.MULTI_GPU and configs["multi_gpu"].num_processes > 1
    fsdp = configs["fsdp"]
    assert fsdp.distributed_type == DistributedType.FSDP and fsdp.num_processes > 1
    assert fsdp.fsdp_config["fsdp_version"] == 2 and fsdp.fsdp_config["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert fsdp.fsdp_config["fsdp_activation_checkpointing"] and fsdp.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    assert all(config.mixed_precision == PrecisionType.BF16 and not config.use_cpu for config in configs.values())


def test_a_training_step_with_the_backbone_sharded_by_fsdp_matches_the_unsharded_step(data):
    """FSDP itself needs GPUs under accelerate; the sharding the FSDP config asks for (FSDP2 on the backbone's
    `_no_split_modules` layers, then the whole model) runs here on 2 CPU processes over gloo."""
    backbone, episodes, _ = data
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
               str(ROOT / "tests" / "helpers" / "fsdp_step.py"), str(backbone), str(episodes)]
    done = _launch(command)
    assert done.returncode == 0, done.stderr[-3000:]
    reports = sorted(re.findall(r"rank (\d): (\d+) layers sharded, (\d+) sharded parameters, (\d+) with gradients", done.stdout))
    assert [r[0] for r in reports] == ["0", "1"]
    assert all(int(layers) > 0 and int(sharded) > 0 and int(grads) > 0 for _, layers, sharded, grads in reports)


def _readme_training_commands() -> list[list[str]]:
    """The commands of the README's "Train your own projector" block, split into arguments."""
    import shlex

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Train your own projector"):]
    block = section[section.index("```bash") + len("```bash"):section.index("```", section.index("```bash") + 7)]
    return [shlex.split(command) for command in block.replace("\\\n", " ").strip().splitlines()]


@pytest.mark.parametrize("launch", ["single_gpu", pytest.param("multi_gpu", marks=pytest.mark.slow)])
def test_the_readme_training_commands_run_on_a_tiny_backbone(launch, tiny_backbone_dirs, tmp_path):
    episodes_command, train_command = _readme_training_commands()
    photos = tmp_path / "my_photos"
    for c, name in enumerate(["bo", "kiki", "mia", "zed", "lu"]):
        (photos / name).mkdir(parents=True)
        for i in range(3):
            random_image(10 * c + i).save(photos / name / f"{i}.png")
    rename = {"my_photos": str(photos), "my_episodes": str(tmp_path / "my_episodes"),
              "my_episodes/train": str(tmp_path / "my_episodes" / "train"),
              "my_episodes/eval": str(tmp_path / "my_episodes" / "eval"),
              "llava-hf/llava-1.5-7b-hf": str(tiny_backbone_dirs["llava"]),
              "outputs/icpt-llava-7b": str(tmp_path / "run")}
    episodes_command = [rename.get(arg, arg) for arg in episodes_command] + ["--num_episodes", "16"]
    assert episodes_command[0] == "icpt"
    done = subprocess.run([str(Path(sys.executable).parent / "icpt"), *episodes_command[1:]], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]

    assert train_command[:3] == ["accelerate", "launch", "--config_file"]
    config = ROOT / train_command[3].replace("single_gpu", launch)
    # the GPU settings overridden for this CPU-only machine, the run shortened and the projector made tiny
    placement = (["--cpu", "--num_processes", "1"] if launch == "single_gpu"
                 else ["--num_processes", "2", "--main_process_port", str(_free_port())])
    command = ([sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), *placement,
                "--mixed_precision", "no"] + [rename.get(arg, arg) for arg in train_command[4:]]
               + ["--use_cpu", "true", "--max_steps", "2", "--save_steps", "1", "--eval_steps", "1",
                  "--per_device_train_batch_size", "2", "--max_prompt_length", "4", "--projector_hidden_size", "32",
                  "--projector_heads", "2", "--projector_layers", "1", "--reader_lora_rank", "2", "--report_to", "none"])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "eval_recognition_weighted" in done.stdout + done.stderr
    assert (tmp_path / "run" / "model.safetensors").is_file()


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
