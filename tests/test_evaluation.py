"""The evaluation harness (`icpt eval`): scoring, episodes, test-time training, and a whole run on a tiny backbone."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import random_image
from datasets import Dataset
from PIL import Image

from icpt import evaluation, evaluation_methods
from icpt.episodes import EPISODE_FEATURES, TASKS
from icpt.evaluation import CHECKPOINT_METHODS, METHODS, main, world_episodes
from icpt.evaluation_methods import eval_episodes, initial_concept_rows, train_concept_prompts
from icpt.evaluation_scoring import METRICS, SPLITS, Scorer
from icpt.world import World
from icpt.world_tasks import build_episodes
from modeling_icpt import ICPTForConditionalGeneration
from processing_icpt import ICPTProcessor

TINY = {"max_prompt_length": 4, "min_prompt_length": 1, "projector_hidden_size": 32, "projector_heads": 2,
        "projector_layers": 1}
ABLATION_OVERRIDES = {"icpt": {}, "icpt_fixed_length": {"adaptive_length": False},
                      "icpt_no_decoupling": {"decoupling_weight": 0.0}, "icpt_no_separation": {"separation_weight": 0.0},
                      "icpt_no_identity_targets": {"identity_target_weight": 0.0}}


@pytest.fixture(autouse=True)
def one_thread():
    # on 2 shared cores, two spinning OpenMP threads made these runs ~10x slower than one
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def episode(task, answer, options=(), present=(), tags=(), target="<a>", image=True):
    return SimpleNamespace(task=task, answer=answer, options=list(options), present=list(present), tags=list(tags),
                           target=target, image_value={"path": "q.png"} if image else None)


@pytest.fixture(scope="module")
def scorer():
    return Scorer()


def test_scores_on_hand_made_answers(scorer):
    episodes = [
        episode("recognition", "Yes", target="<a>"),
        episode("recognition", "Yes", target="<b>", tags=["environment_shift"]),
        episode("recognition", "No", target="<a>", tags=["multi_concept"]),
        episode("recognition", "No", target="<b>", tags=["look_alike"]),
        episode("vqa", "Dog", options=["Cat", "Dog"], tags=["environment_shift"]),
        episode("text_qa", "red", options=["red", "blue"], image=False),
        episode("presence", "<a>, <b>", tags=["multi_concept"]),
        episode("attribute", "a hat"),
        episode("caption", "a photo of <a> and <b>.", present=["<a>", "<b>"], tags=["multi_concept"]),
    ]
    predictions = ["Yes, it is.", "no", "No.", "Maybe", "(B)", "blue", "<b> and <a>", "A hat.", "<a> on a sofa"]
    scores = scorer.score(episodes, predictions)
    overall = scores["all"]
    assert set(overall) == set(METRICS) and set(SPLITS) <= set(scores)
    assert (overall["recognition_positive"], overall["recognition_negative"]) == (0.5, 0.5)
    assert overall["recognition_weighted"] == 0.5
    assert (overall["vqa"], overall["text_qa"], overall["presence"], overall["attribute"]) == (1.0, 0.0, 1.0, 1.0)
    # single-concept images: recognition 1 of 3 right (the "Maybe" is wrong), vqa and attribute right: 3 of 5
    assert overall["single_concept"] == pytest.approx(3 / 5)
    assert overall["multi_concept"] == 1.0  # the "No." recognition and the presence question
    assert overall["caption_recall"] == 0.5
    shifted = scores["environment_shift"]
    assert (shifted["recognition_positive"], shifted["recognition_negative"], shifted["vqa"]) == (0.0, None, 1.0)
    assert shifted["recognition_weighted"] is None and shifted["text_qa"] is None
    assert scores["look_alike"]["recognition_negative"] == 0.0
    assert scores["per_concept"]["<a>"]["recognition_weighted"] == 1.0
    assert scores["per_concept"]["<b>"]["recognition_weighted"] == 0.0


def _concept_dataset(descriptions=True):
    rows = []
    for i in range(3):
        refs = [random_image(10 * i + j) for j in range(4)]
        rows.append({
            "concepts": [{"name": "<bo>", "references": [random_image(j) for j in range(4)], "masks": [],
                          "description": "a red dog" if descriptions else None},
                         {"name": f"<c{i}>", "references": refs, "masks": [], "description": "a mug" if descriptions else None}],
            "image": random_image(100 + i), "question": "Can you see <bo> in this photo?", "answer": "Yes",
            "task": "recognition", "target": "<bo>", "options": [], "present": ["<bo>"], "tags": [],
        })
    return Dataset.from_list(rows, features=EPISODE_FEATURES)


def test_reference_draws_depend_on_the_seed_and_the_concept_only():
    dataset = _concept_dataset()
    capped = eval_episodes(dataset, num_references=2, seed=0)
    assert all(c.num_references == 2 for e in capped for c in e.concepts)
    # the same concept in three episodes keeps the same two references, so it is added once per seed
    assert len({e.concepts[0].key for e in capped}) == 1
    assert [c.key for e in eval_episodes(dataset, 2, seed=0) for c in e.concepts] == [c.key for e in capped for c in e.concepts]
    draws = {eval_episodes(dataset, 2, seed=s)[0].concepts[0].key for s in range(6)}
    assert len(draws) > 1
    assert all(c.num_references == 4 for e in eval_episodes(dataset) for c in e.concepts)
    with pytest.raises(ValueError, match="at least 1"):
        eval_episodes(dataset, num_references=0)


def test_world_episodes_are_fresh_held_out_episodes_per_seed():
    source = world_episodes(world_seed=0, num_identities=60, num_episodes=6)
    first, second = source(0), source(1)
    assert first.features == EPISODE_FEATURES and len(first) == 6
    assert sorted(first["task"]) == sorted(["recognition", "presence", "vqa", "text_qa", "attribute", "caption"])
    assert first["question"] != second["question"]
    assert "held-out" in source.description


@pytest.fixture(scope="module")
def tiny_llava(tiny_backbone_dirs):
    return tiny_backbone_dirs["llava"]


def test_test_time_training_updates_only_its_rows_and_lowers_its_loss(tiny_llava):
    processor = ICPTProcessor.from_backbone(tiny_llava, max_prompt_length=4)
    torch.manual_seed(0)
    model = ICPTForConditionalGeneration.from_backbone(tiny_llava, prompt_token_id=processor.prompt_token_id, **TINY)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    positives, negatives = [random_image(i) for i in range(3)], [random_image(20 + i) for i in range(3)]
    bank, losses = train_concept_prompts(model, processor, "<bo>", positives, negatives, steps=8, seed=3)

    assert bank.labels == ["<bo>"] and bank.lengths == {"<bo>": 16}
    assert losses[-1] < losses[0] - 0.01, losses
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), f"{name} changed"
    assert all(p.grad is None for p in model.parameters())
    initial = initial_concept_rows(model, 16, seed=3)
    assert not torch.allclose(bank.prompts, initial)
    assert (bank.prompts - initial).abs().amax(dim=-1).gt(0).all(), "every row should move"
    with pytest.raises(ValueError, match="positive"):
        train_concept_prompts(model, processor, "<bo>", [], negatives)


def test_test_time_training_with_relabel_asks_under_a_new_label_each_step(tiny_llava, monkeypatch):
    processor = ICPTProcessor.from_backbone(tiny_llava, max_prompt_length=4)
    torch.manual_seed(0)
    model = ICPTForConditionalGeneration.from_backbone(tiny_llava, prompt_token_id=processor.prompt_token_id, **TINY)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    positives, negatives = [random_image(i) for i in range(2)], [random_image(20 + i) for i in range(2)]
    asked = []  # (the preamble's labels, the asked label, the concept's rows) of every step
    batch_of = evaluation_methods.recognition_batch

    def recording_batch(processor, bank, label, positives, negatives):
        asked.append((list(bank.labels), label, bank.prompts[0].detach().clone()))
        return batch_of(processor, bank, label, positives, negatives)

    monkeypatch.setattr(evaluation_methods, "recognition_batch", recording_batch)
    bank, losses = train_concept_prompts(model, processor, "<bo>", positives, negatives, num_rows=4, steps=6, seed=3,
                                         relabel=np.random.default_rng(0))

    assert len(asked) == 6 and len(losses) == 6
    assert bank.labels == ["<bo>"] and bank.lengths == {"<bo>": 4}
    assert all(labels == [label] and label.startswith("<w") for labels, label, _ in asked)
    assert len({label for _, label, _ in asked}) == 6, "a new label every step"
    # the asked concept's rows are the ones being trained: they start at the initialization and move
    assert torch.equal(asked[0][2], initial_concept_rows(model, 4, seed=3)[0])
    assert not torch.equal(asked[-1][2], asked[0][2]) and not torch.equal(bank.prompts[0], asked[0][2])
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), f"{name} changed"
    again, _ = train_concept_prompts(model, processor, "<bo>", positives, negatives, num_rows=4, steps=6, seed=3,
                                     relabel=np.random.default_rng(0))
    assert torch.equal(again.prompts, bank.prompts), "the generator fixes the labels"


@pytest.fixture(scope="module")
def default_preset(tiny_llava, tmp_path_factory):
    """A stand-in for `icpt/default` (the tiny backbone and a tiny projector) and for the ablation projectors."""
    root = tmp_path_factory.mktemp("default")
    backbone = root / "backbone"
    backbone.symlink_to(Path(tiny_llava).resolve(), target_is_directory=True)
    processor = ICPTProcessor.from_backbone(backbone, max_prompt_length=4)
    checkpoints = {}
    for method, overrides in ABLATION_OVERRIDES.items():
        torch.manual_seed(0)
        model = ICPTForConditionalGeneration.from_backbone(backbone, prompt_token_id=processor.prompt_token_id,
                                                           **TINY, **overrides)
        checkpoints[method] = root / "projector" if method == "icpt" else root / "ablations" / method
        # as shipped: the backbone named relative to the checkpoint's folder
        model.config.base_model_name_or_path = "../backbone" if method == "icpt" else "../../backbone"
        model.save_pretrained(checkpoints[method])
    return SimpleNamespace(root=root, ablations=root / "ablations", checkpoints=checkpoints)


def _world_dataset(path, descriptions=True):
    # every task once, plus two more recognition questions so that both answers occur (Yes, Yes, No)
    episodes = build_episodes(World(seed=0, num_identities=60), "held_out", num_episodes=8, seed=0,
                              tasks=TASKS + ("recognition", "recognition"))
    assert {a for t, a in zip(episodes["task"], episodes["answer"]) if t == "recognition"} == {"Yes", "No"}
    assert all(c["description"] for row in episodes["concepts"] for c in row)  # the world describes its identities
    if not descriptions:
        episodes = episodes.map(lambda row: {"concepts": [{**c, "description": None} for c in row["concepts"]]})
    episodes.save_to_disk(path)
    return path


def test_preset_run_writes_results_plots_and_the_docs_page(default_preset, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(evaluation, "DEFAULT_DIR", default_preset.root)
    episodes = _world_dataset(tmp_path / "episodes")
    out, docs = tmp_path / "out", tmp_path / "docs" / "results.md"
    argv = ["--preset", "default", "--ablations-dir", str(default_preset.ablations), "--episodes", str(episodes),
            "--seeds", "0", "1", "2", "--reference-counts", "1", "2",
            "--ttt-steps", "2", "--ttt-negatives", "2", "--max-new-tokens", "5", "--output-dir", str(out),
            "--write-docs", str(docs), "--quiet"]
    assert main(argv) == 0

    results = json.loads((out / "results.json").read_text())
    assert results["schema_version"] == evaluation.SCHEMA_VERSION
    assert {"command", "backbone", "data", "seeds", "seed_varies", "settings", "metrics", "splits", "methods",
            "reference_sweep", "plots"} <= results.keys()
    assert results["seeds"] == [0, 1, 2] and results["data"]["num_episodes"] == [8, 8, 8]
    assert list(results["methods"]) == list(METHODS)
    for name, row in results["methods"].items():
        assert row["status"] == "ok", (name, row["note"])
        assert set(row["results"]) == set(SPLITS)
        for split in SPLITS:
            assert set(row["results"][split]) == set(METRICS)
            for value in row["results"][split].values():
                assert set(value) == {"mean", "low", "high", "per_seed", "num_seeds"} and len(value["per_seed"]) == 3
        weighted = row["results"]["all"]["recognition_weighted"]
        assert weighted["num_seeds"] >= 1 and 0.0 <= weighted["mean"] <= 1.0
        assert row["prompt_tokens_per_concept"]["num_seeds"] == 3 and row["seconds_per_concept"]["mean"] > 0
        assert row["examples"] and {"question", "answer", "prediction"} <= row["examples"][0].keys()
    methods = results["methods"]
    for name in CHECKPOINT_METHODS:
        assert methods[name]["checkpoint"] == str(default_preset.checkpoints[name])
        assert "trained on" not in (methods[name]["note"] or "")  # "../backbone" is read from the checkpoint folder
    tokens = {name: row["prompt_tokens_per_concept"]["mean"] for name, row in methods.items()}
    assert tokens["icpt_fixed_length"] == 4.0  # the fixed-length ablation always uses max_prompt_length rows
    assert 1.0 <= tokens["icpt"] <= 4.0
    assert tokens["test_time_training"] == 16.0
    assert tokens["raw_references"] >= 16.0  # at least one photo of 16 image tokens per concept
    sweep = results["reference_sweep"]
    assert sweep["counts"] == [1, 2] and set(sweep["methods"]) == set(CHECKPOINT_METHODS) | {"raw_references"}

    markdown = (out / "results.md").read_text()
    assert all(f"| {name} |" in markdown for name in METHODS)
    page = docs.read_text()
    assert page.startswith("# ICPT results") and "icpt eval --preset default --ablations-dir" in page
    for file in results["plots"].values():
        assert f"results_plots/{file}" in page
        with Image.open(docs.parent / "results_plots" / file) as plot:
            assert plot.format == "PNG" and plot.width > 100
    assert "Main results" in capsys.readouterr().out


def test_baselines_without_checkpoints_and_without_descriptions(tiny_llava, tmp_path):
    from datasets import load_from_disk

    results = evaluation.run_evaluation(
        load_from_disk(_world_dataset(tmp_path / "episodes", descriptions=False)), backbone=tiny_llava, methods=["icpt", "name_only", "text_description"],
        seeds=[0], num_episodes=3, reference_counts=[], max_new_tokens={task: 3 for task in ("caption", "presence")},
        progress=False,
    )
    rows = results["methods"]
    assert rows["icpt"]["status"] == "skipped" and "--checkpoint icpt=PATH" in rows["icpt"]["note"]
    assert rows["text_description"]["status"] == "skipped" and "description" in rows["text_description"]["note"]
    assert rows["name_only"]["status"] == "ok" and results["data"]["num_episodes"] == [3]
    assert rows["name_only"]["results"]["all"]["recognition_weighted"]["low"] is None  # one seed: no interval
    assert results["reference_sweep"]["methods"] == {}


def test_clear_errors(default_preset, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="train_icpt.py"):
        evaluation.run_evaluation(_concept_dataset(), checkpoints={"icpt": str(tmp_path / "nothing")})
    with pytest.raises(ValueError, match="--separation_weight 0"):
        evaluation.run_evaluation(_concept_dataset(),
                                  checkpoints={"icpt_no_separation": str(default_preset.checkpoints["icpt"])})
    with pytest.raises(ValueError, match="Unknown methods"):
        evaluation.run_evaluation(_concept_dataset(), methods=["icpt", "magic"])
    with pytest.raises(SystemExit):
        main(["--checkpoint", "magic=somewhere"])
    monkeypatch.setattr(evaluation, "DEFAULT_DIR", tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="pretrain_world_backbone.py"):
        main(["--preset", "default"])
    (tmp_path / "backbone_only").mkdir()
    (tmp_path / "backbone_only" / "backbone").symlink_to(default_preset.root / "backbone")
    monkeypatch.setattr(evaluation, "DEFAULT_DIR", tmp_path / "backbone_only")
    with pytest.raises(FileNotFoundError, match="projector is not at .*train_icpt.py .*--output_dir"):
        main(["--preset", "default"])
