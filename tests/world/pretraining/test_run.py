"""The pretraining run (icpt/world/pretraining/run.py): a tiny run that resumes and exports, workers, init-from."""

import json

import numpy as np
import pytest
import torch

from icpt.commands.arguments import ArgumentParser
from icpt.world.pretraining.arguments import PretrainArguments
from icpt.world.pretraining.batches import TrainingBatches
from icpt.world.pretraining.evaluation import comparison_eval_set
from icpt.world.pretraining.run import pretrain
from icpt.world.tasks import COMPARE_QUESTION, WorldTasks
from icpt.world.world import World


def run(argv: list[str]) -> dict:
    """A sitting from a command line in the dash forms the docs use (`--patch-size 8`), as the script parses it."""
    (args,) = ArgumentParser(PretrainArguments).parse(argv)
    return pretrain(args)


TINY = [
    "--num-identities", "60", "--renders-per-identity", "3", "--views", "2",
    "--contrastive-identities", "4", "--contrastive-pairs", "2", "--contrastive-steps", "3",
    "--comparison-steps", "3", "--question-steps", "3", "--batch-size", "4", "--eval-every", "2", "--eval-limit", "3",
    "--vision-hidden", "32", "--vision-layers", "1", "--text-hidden", "32", "--text-layers", "1",
    "--threads", "1",
]  # fmt: skip


def test_tiny_run_resumes_and_exports_a_loadable_model(tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    work, output = tmp_path / "work", tmp_path / "model"
    paths = ["--work-dir", str(work), "--output-dir", str(output)]
    first = run(TINY + paths + ["--max-minutes", "0"])  # stops after the first step
    assert not first["finished"] and first["state"]["contrastive_step"] == 1
    with pytest.raises(FileExistsError, match="--resume"):
        run(TINY + paths)
    second = run(TINY + paths + ["--resume"])
    assert second["finished"] and second["state"]["contrastive_step"] == 3 and second["state"]["comparison_step"] == 3
    assert second["state"]["questions_step"] == 3
    assert set(second["results"]) >= {
        "held_out/overall", "held_out/look_alike", "held_out/named/overall", "held_out/named/look_alike", "train/overall"
    }  # fmt: skip

    card = (output / "README.md").read_text()
    assert "Total training time" in card and "held-out" in card and "| side |" in card
    assert "min on CPU, 1 threads" in card and "costs 16 tokens" in card
    assert "identities added" not in card and "(25% look-alike negatives)" in card
    probe = json.loads((output / "training_results.json").read_text())["attribute_probe"]
    assert set(probe) == {"shape", "colour", "colour2", "pattern", "mark", "side", "accessory"}
    assert json.loads((output / "training_results.json").read_text())["state"]["comparison_step"] == 3
    assert (output / "model.safetensors").exists()
    assert World(**json.loads((output / "world.json").read_text())).identities == World(0, 60).identities
    exported = run(TINY + paths + ["--export-now"])  # measure and save again from the checkpoint
    assert exported["finished"] and exported["results"] == second["results"]
    model = AutoModelForImageTextToText.from_pretrained(output)
    processor = AutoProcessor.from_pretrained(output)
    world = World(seed=0, num_identities=60)
    images = [
        world.render([i], world.environment_set("A")[0], np.random.default_rng(i))[0]
        for i in world.split("held_out")[:2]
    ]
    messages = [{"role": "user", "content": [{"type": "image"}] * 2 + [{"type": "text", "text": COMPARE_QUESTION}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(images=images, text=prompt, return_tensors="pt")
    generated = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert generated.shape[1] > inputs["input_ids"].shape[1]


def test_copy_steps_beyond_stage_4_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="--copy-steps 5 exceeds --format-steps 4"):
        run(TINY + ["--work-dir", str(tmp_path), "--format-steps", "4", "--copy-steps", "5"])


def test_fewer_renders_than_views_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="--renders-per-identity 2 is below --views 4"):
        run(TINY + ["--work-dir", str(tmp_path), "--renders-per-identity", "2", "--views", "4"])


def test_an_unknown_format_task_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="--format-tasks vqa captions: unknown captions; name tasks among recognition"):
        run(TINY + ["--work-dir", str(tmp_path), "--format-steps", "4", "--format-tasks", "vqa", "captions"])


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="run once without --resume"):
        run(TINY + ["--work-dir", str(tmp_path), "--output-dir", str(tmp_path / "m"), "--resume"])


def test_worker_processes_build_the_same_batches(tmp_path):
    """Batches come from one random stream per step, so workers change speed, not the result."""
    results = []
    for workers in ("0", "2"):
        paths = ["--work-dir", str(tmp_path / workers), "--output-dir", str(tmp_path / f"model{workers}")]
        extra = ["--extra-training-identities", "20"]  # training identities beyond the world's own, in pairs
        results.append(run(TINY + paths + extra + ["--workers", workers, "--device", "cpu"]))
    assert results[0]["finished"] and results[1]["finished"]
    assert results[0]["results"] == results[1]["results"]
    assert results[0]["state"]["history"] == results[1]["state"]["history"]
    first, second = (np.load(tmp_path / w / "bank_seed0_n60+20_r3_s64.npz")["images"] for w in ("0", "2"))
    assert np.array_equal(first, second)  # the bank rendered in two processes equals the one rendered here
    assert len(first) == len(World(0, 60).split("train")) + 20
    # the exported world is the evaluation world (its held-out split), without the extra identities
    world_settings = json.loads((tmp_path / "model0" / "world.json").read_text())
    assert world_settings == {"seed": 0, "num_identities": 60, "image_size": 64}
    assert "(20 identities added to the world's own training split" in (tmp_path / "model0" / "README.md").read_text()


def test_init_from_an_exported_backbone_continues_stage_3_or_4(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    source = tmp_path / "source"
    run(TINY + ["--work-dir", str(tmp_path / "w0"), "--output-dir", str(source)])
    paths = ["--work-dir", str(tmp_path / "w1"), "--output-dir", str(tmp_path / "copy")]
    copied = run(TINY + paths + ["--init-from", str(source), "--question-steps", "0"])
    assert copied["state"]["contrastive_step"] == 3 and copied["state"]["comparison_step"] == 3
    assert copied["state"]["questions_step"] == 0 and copied["finished"]
    before, after = load_file(source / "model.safetensors"), load_file(tmp_path / "copy" / "model.safetensors")
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)

    paths = ["--work-dir", str(tmp_path / "w2"), "--output-dir", str(tmp_path / "tuned")]
    tuned = run(TINY + paths + ["--init-from", str(source), "--look-alike-fraction", "0.6"])
    assert tuned["state"]["questions_step"] == 3
    source_history, history = copied["state"]["history"], tuned["state"]["history"]  # the copy kept the source's
    assert history[: len(source_history)] == source_history  # and stages 1-2 did not run again:
    assert [entry.get("questions_step") for entry in history[len(source_history) :]] == [2]
    card = (tmp_path / "tuned" / "README.md").read_text()
    assert f"started from `{source}`, a backbone trained as above" in card and "(25% look-alike negatives)" in card
    assert "(3 steps, tower learning rate 0.0001, then 3 steps, tower learning rate 0.0001, 60% look-alike" in card
    changed = load_file(tmp_path / "tuned" / "model.safetensors")
    assert any(not torch.equal(before[k], changed[k]) for k in before)

    # stage 4, the answer formats, continues the source with its tower frozen
    paths = ["--work-dir", str(tmp_path / "w5"), "--output-dir", str(tmp_path / "formats")]
    kinds = []
    build = TrainingBatches.__call__
    monkeypatch.setattr(TrainingBatches, "__call__", lambda self, job: kinds.append(job[2]) or build(self, job))
    asked = []
    labelled = WorldTasks.labelled_question
    monkeypatch.setattr(WorldTasks, "labelled_question",
                        lambda self, rng, task=None: asked.append(task) or labelled(self, rng, task))
    formats = run(
        TINY + paths + ["--init-from", str(source), "--question-steps", "0", "--format-steps", "5", "--copy-steps", "2",
                        "--format-tasks", "text_qa", "presence", "text_qa"]
    )
    assert formats["finished"] and formats["state"]["formats_step"] == 5 and formats["state"]["questions_step"] == 0
    assert [entry.get("formats_step") for entry in formats["state"]["history"][len(source_history) :]] == [2, 4]
    stage_4 = load_file(tmp_path / "formats" / "model.safetensors")
    tower = [k for k in before if "vision_tower" in k]
    assert tower and all(torch.equal(before[k], stage_4[k]) for k in tower)
    assert any(not torch.equal(before[k], stage_4[k]) for k in before if "language_model" in k)
    card = (tmp_path / "formats" / "README.md").read_text()
    assert "Then the evaluation's answer formats (5 steps, tower learning rate 0.0; the first 2 text-only label" in card
    # the first --copy-steps are label copying, the rest the formats' mix (batches built in this process: no workers)
    assert kinds[:2] == ["label_copy", "label_copy"] and "label_copy" not in kinds[2:]
    assert "labelled_question" in kinds[2:]
    assert set(asked) == {"text_qa", "presence"}  # the labelled questions of --format-tasks only
    assert "ICPT episodes drawn from text_qa, presence, text_qa asked with" in card
    # a continuation measures itself against its source on the same examples, paired
    compared = json.loads((tmp_path / "formats" / "training_results.json").read_text())["against_source"]
    assert set(compared) == {"held_out/overall", "held_out/look_alike", "held_out/named/overall",
                             "held_out/named/look_alike"}
    overall = compared["held_out/overall"]
    assert overall["n"] == len(comparison_eval_set(World(0, 60), "held_out", 3, seed=1, limit=3)["overall"])
    assert overall["difference"] == pytest.approx(
        formats["results"]["held_out/overall"]["weighted"] - copied["results"]["held_out/overall"]["weighted"]
    )  # the copy is the source itself, measured on the same examples
    assert f"Against the backbone it continued (`{source}`)" in card and "| overall |" in card
    assert "(3 steps, tower learning rate 0.0001)" in card  # the source's stage 3, not continued

    wrong = TINY + ["--work-dir", str(tmp_path / "w3"), "--output-dir", str(tmp_path / "x"), "--text-hidden", "64"]
    with pytest.raises(ValueError, match="do not fit this run's model settings"):
        run(wrong + ["--init-from", str(source)])
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        run(TINY + ["--work-dir", str(tmp_path / "w4"), "--init-from", str(tmp_path)])


def test_language_model_from_starts_stage_2_on_an_exports_language_model(tmp_path, monkeypatch):
    from transformers import LlavaForConditionalGeneration

    source = tmp_path / "source"
    run(TINY + ["--work-dir", str(tmp_path / "w0"), "--output-dir", str(source)])
    before = LlavaForConditionalGeneration.from_pretrained(source).state_dict()
    # a sitting that ends with stage 1, as a run stopped there; then stage 2 takes the export's language model
    work = ["--work-dir", str(tmp_path / "w1"), "--output-dir", str(tmp_path / "new"), "--seed", "1"]
    stage_1 = run(TINY + work + ["--comparison-steps", "0", "--question-steps", "0", "--max-minutes", "0",
                                "--contrastive-steps", "1"])
    assert not stage_1["finished"] and stage_1["state"]["contrastive_step"] == 1
    starts = {}
    original = torch.nn.Module.load_state_dict

    def record(module, weights, *args, **kwargs):  # the weights stage 2 starts from
        starts.update({name: value.clone() for name, value in weights.items()})
        return original(module, weights, *args, **kwargs)

    stage_1_tower = torch.load(tmp_path / "w1" / "checkpoint.pt", weights_only=False)["model"]
    with monkeypatch.context() as patch:
        patch.setattr(torch.nn.Module, "load_state_dict", record)
        resumed = run(TINY + work + ["--resume", "--contrastive-steps", "1", "--language-model-from", str(source)])
    assert resumed["finished"] and resumed["state"]["language_model_from"] == str(source)
    language = [k for k in before if "vision_tower" not in k]
    tower = [k for k in before if "vision_tower" in k]
    assert language and tower
    assert all(torch.equal(before[k], starts[k]) for k in language)  # the export's connector and language model
    assert all(torch.equal(stage_1_tower[k], starts[k]) for k in tower)  # this run's own tower, kept
    assert not all(torch.equal(before[k], starts[k]) for k in tower)
    card = (tmp_path / "new" / "README.md").read_text()
    assert f"connector and language model started from `{source}`" in card

    # stage 2 began without it: passing it later is refused, as is a run that has no stage 2 to start
    work = ["--work-dir", str(tmp_path / "w2"), "--output-dir", str(tmp_path / "x")]
    run(TINY + work + ["--max-minutes", "0", "--contrastive-steps", "0"])  # one comparison step from random weights
    with pytest.raises(ValueError, match="began .step 1. from random weights"):
        run(TINY + work + ["--resume", "--contrastive-steps", "0", "--language-model-from", str(source)])
    with pytest.raises(ValueError, match="needs --comparison-steps > 0"):
        run(TINY + ["--work-dir", str(tmp_path / "w3"), "--comparison-steps", "0", "--language-model-from", str(source)])
