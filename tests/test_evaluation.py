"""The evaluation harness (`icpt eval`): scoring, episodes, test-time training, and a whole run on a tiny backbone."""

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from datasets import Dataset
from PIL import Image

from helpers.images import random_image
from icpt.commands.eval import main
from icpt.episodes import EPISODE_FEATURES, TASKS
from icpt.evaluation import harness
from icpt.evaluation.harness import CHECKPOINT_METHODS, METHODS, select_stratified, world_episodes
from icpt.evaluation.methods import eval_episodes
from icpt.evaluation.scoring import METRICS, SPLITS, Scorer, cells, compare_runs, is_positive, question_score
from icpt.training import prompt_fitting
from icpt.training.prompt_fitting import initial_concept_rows, train_concept_prompts
from icpt.world.tasks import build_episodes, generic_episodes
from icpt.world.world import World
from modeling_icpt import ICPTForConditionalGeneration
from processing_icpt import ICPTProcessor

TINY = {"max_prompt_length": 4, "min_prompt_length": 1, "projector_hidden_size": 32, "projector_heads": 2,
        "projector_layers": 1}
# icpt with a (fresh) reader adapter, as shipped; its frozen-reader ablation has none
ABLATION_OVERRIDES = {"icpt": {"reader_lora_rank": 2}, "icpt_frozen_reader": {}, "icpt_fixed_length": {"adaptive_length": False},
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
    assert set(overall) == set(METRICS) and set(SPLITS) == set(scores)
    assert (overall["recognition_positive"], overall["recognition_negative"]) == (0.5, 0.5)
    assert overall["recognition_weighted"] == 0.5
    assert (overall["vqa"], overall["text_qa"], overall["presence"], overall["attribute"]) == (1.0, 0.0, 1.0, 1.0)
    assert overall["caption_recall"] == 0.5
    shifted = scores["environment_shift"]
    assert (shifted["recognition_positive"], shifted["recognition_negative"], shifted["vqa"]) == (0.0, None, 1.0)
    assert shifted["recognition_weighted"] is None and shifted["text_qa"] is None
    assert scores["look_alike"]["recognition_negative"] == 0.0

    # the per-question scores the harness bootstraps give exactly the evaluate modules' figures
    outcomes = [{"question_id": str(i), "task": e.task, "splits": e.tags, "score": question_score(e, p),
                 "positive": is_positive(e)} for i, (e, p) in enumerate(zip(episodes, predictions))]
    per_question = cells(outcomes)
    for split in SPLITS:
        for metric in METRICS:
            value, expected = per_question[split][metric], scores[split][metric]
            assert (value["mean"] is None) == (expected is None), (split, metric)
            assert expected is None or value["mean"] == pytest.approx(expected), (split, metric)
            if value["low"] is not None:
                assert 0.0 <= value["low"] <= value["mean"] <= value["high"] <= 1.0


def test_stratified_selection_meets_every_quota_and_balances_answers():
    rng = np.random.default_rng(0)
    answers = [bool(rng.random() < 0.5) for _ in range(400)]
    tags = [[t for t, p in (("rare", 0.08), ("common", 0.4)) if rng.random() < p] for _ in range(400)]
    chosen = select_stratified(answers, tags, total=100, min_per_split=25, splits=["rare", "common"], seed=1)
    assert len(chosen) == 100 and len(set(chosen)) == 100
    assert sum(answers[i] for i in chosen) == 50
    assert sum("rare" in tags[i] for i in chosen) >= 25 and sum("common" in tags[i] for i in chosen) >= 25
    assert chosen == select_stratified(answers, tags, total=100, min_per_split=25, splits=["rare", "common"], seed=1)


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


def test_world_episodes_are_stratified_held_out_episodes_per_seed():
    source = world_episodes(world_seed=0, num_identities=60, num_recognition=12, min_per_split=3, task_questions=1,
                            generic_questions=2)
    first, second = source(0), source(1)
    assert first.features == EPISODE_FEATURES
    recognition = [(a, t) for task, a, t in zip(first["task"], first["answer"], first["tags"]) if task == "recognition"]
    assert len(recognition) >= 12 and sum(a == "Yes" for a, _ in recognition) >= 6
    for split in ("environment_shift", "look_alike", "multi_concept"):
        assert sum(split in t for _, t in recognition) >= 3, split
    assert sorted(t for t in first["task"] if t not in ("recognition", "generic")) == sorted(set(TASKS) - {"recognition"})
    generic = [i for i, task in enumerate(first["task"]) if task == "generic"]
    assert len(generic) == 2 and all(first[i]["concepts"] == [] and first[i]["answer"] for i in generic)
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
    batch_of = prompt_fitting.recognition_batch

    def recording_batch(processor, bank, label, positives, negatives):
        asked.append((list(bank.labels), label, bank.prompts[0].detach().clone()))
        return batch_of(processor, bank, label, positives, negatives)

    monkeypatch.setattr(prompt_fitting, "recognition_batch", recording_batch)
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


def test_preset_run_writes_results_outcomes_plots_and_the_docs_page(default_preset, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(harness, "DEFAULT_DIR", default_preset.root)
    episodes = _world_dataset(tmp_path / "episodes")
    out, docs = tmp_path / "out", tmp_path / "docs" / "results.md"
    # an untrained backbone does nothing better than chance: a negative bar makes every task measurable here
    argv = ["--preset", "default", "--ablations-dir", str(default_preset.ablations), "--episodes", str(episodes),
            "--reference-counts", "1", "2", "--sweep-questions", "2", "--ttt-questions", "3", "--ceiling-margin", "-1",
            "--ttt-steps", "2", "--ttt-negatives", "2", "--max-new-tokens", "5", "--output-dir", str(out),
            "--write-docs", str(docs), "--quiet"]
    assert main(argv) == 0

    results = json.loads((out / "results.json").read_text())
    assert results["schema_version"] == harness.SCHEMA_VERSION
    assert {"command", "backbone", "data", "seeds", "variance", "settings", "metrics", "splits", "ceiling", "methods",
            "claims", "reference_sweep", "outcomes", "plots"} <= results.keys()
    assert results["data"]["num_episodes"] == [8] and results["reference_method"] == "icpt"
    assert set(results["ceiling"]) == set(TASKS) and all(row["measurable"] for row in results["ceiling"].values())
    # icpt has the length rule, so its adaptive-length ablation does not apply
    assert list(results["methods"]) == [m for m in METHODS if m != "icpt_adaptive_length"]
    for name, row in results["methods"].items():
        assert row["status"] == "ok", (name, row["note"])
        assert row["num_questions"] == (3 if name == "test_time_training" else 8)
        assert set(row["results"]) == set(SPLITS)
        for split in SPLITS:
            assert set(row["results"][split]) == set(METRICS)
            for value in row["results"][split].values():
                assert {"mean", "low", "high", "n"} <= set(value)
                if value["low"] is not None:
                    assert 0.0 <= value["low"] <= value["mean"] <= value["high"] <= 1.0
        weighted = row["results"]["all"]["recognition_weighted"]
        if name != "test_time_training":  # its subsample of 3 questions may lack a positive or a negative
            assert weighted["n_positive"] == 2 and weighted["n_negative"] == 1 and 0.0 <= weighted["mean"] <= 1.0
        assert row["prompt_tokens_per_concept"]["n"] >= 1 and row["seconds_per_concept"]["mean"] > 0
        if name != "icpt":
            difference = row["difference"]["all"]["recognition_weighted"]
            assert {"difference", "low", "high", "p_value", "n", "discordant", "verdict"} <= set(difference)
            assert difference["p_value"] is None or 0.0 <= difference["p_value"] <= 1.0
        assert row["examples"] and {"question", "answer", "prediction"} <= row["examples"][0].keys()
    methods = results["methods"]
    for name in CHECKPOINT_METHODS:
        if name == "icpt_adaptive_length":
            continue
        assert methods[name]["checkpoint"] == str(default_preset.checkpoints[name])
        assert "trained on" not in (methods[name]["note"] or "")  # "../backbone" is read from the checkpoint folder
    tokens = {name: row["prompt_tokens_per_concept"] for name, row in methods.items()}
    assert tokens["icpt_fixed_length"]["min"] == tokens["icpt_fixed_length"]["max"] == 4.0  # always max_prompt_length
    assert 1.0 <= tokens["icpt"]["mean"] <= 4.0
    assert tokens["test_time_training"]["mean"] == 16.0
    assert tokens["raw_references"]["min"] >= 16.0  # at least one photo of 16 image tokens per concept
    assert [claim["verdict"] in ("supported", "refuted", "cannot decide") for claim in results["claims"]] == [True] * 7
    # the swap test: icpt's and the photos' positives asked again with another identity's photos
    swap = results["swap_test"]
    assert swap["num_questions"] == 2 and set(swap["methods"]) == {"icpt", "raw_references"}
    assert all(0.0 <= row["changed"]["mean"] <= 1.0 for row in swap["methods"].values())
    assert "swapping its photos" in results["claims"][-1]["claim"]
    assert "raw_references_recognition" in results["adapter_cost"]  # no generic question in these episodes
    # the reader adapter: icpt has its own backbone; the adapted baselines ask through its language model
    assert methods["icpt"]["reader_lora_rank"] == 2 and methods["icpt_frozen_reader"]["reader_lora_rank"] == 0
    assert "differ in two parts" in results["claims"][2]["evidence"]  # a frozen-reader ablation against icpt
    sweep = results["reference_sweep"]
    assert sweep["counts"] == [1, 2] and set(sweep["methods"]) == {"icpt", "raw_references"}

    # one line per answer: every method on the same questions (test-time training on a subsample)
    lines = [json.loads(line) for line in (out / results["outcomes"]).read_text().splitlines()]
    assert len(lines) == 8 * (len(METHODS) - 2) + 3  # less test-time training and icpt_adaptive_length
    for line in lines:
        assert {"episode", "question_id", "task", "splits", "method", "prediction", "score", "prompt_tokens"} <= set(line)
        assert line["task"] == "caption" or line["correct"] == (line["score"] == 1.0)
    questions = {}
    for line in lines:
        questions.setdefault(line["method"], set()).add(line["question_id"])
    assert all(ids == questions["icpt"] for name, ids in questions.items() if name != "test_time_training"), {n: len(i) for n, i in questions.items()}
    assert questions["test_time_training"] < questions["icpt"]
    # a question's prompt holds only the concepts it names: one for "Can you see <w1> ...", all for a caption
    for line in lines:
        if line["method"] == "icpt_fixed_length":
            assert line["prompt_tokens"] == 4 * len(re.findall(r"<w\d+>", line["question"])), line
    assert {line["prompt_tokens"] for line in lines if line["method"] == "icpt_fixed_length"
            and line["task"] == "recognition"} == {4}

    markdown = (out / "results.md").read_text()
    assert all(f"| {name} |" in markdown for name in results["methods"])
    page = docs.read_text()
    assert page.startswith("# ICPT results") and "What these numbers say" in page
    assert "icpt eval --preset default --ablations-dir" in page
    for file in results["plots"].values():
        assert f"results_plots/{file}" in page
        with Image.open(docs.parent / "results_plots" / file) as plot:
            assert plot.format == "PNG" and plot.width > 100
    assert "Main results" in capsys.readouterr().out


def test_tasks_below_the_ceiling_are_marked_and_not_run(tiny_llava, tmp_path):
    from datasets import load_from_disk

    results = harness.run_evaluation(
        load_from_disk(_world_dataset(tmp_path / "episodes")), backbone=tiny_llava,
        methods=["raw_references", "name_only"], reference_counts=[], ceiling_margin=0.99,
        max_new_tokens={task: 3 for task in TASKS}, progress=False, output_dir=tmp_path / "out",
    )
    assert not any(row["measurable"] for row in results["ceiling"].values())  # nothing beats chance by 0.99
    assert results["methods"]["raw_references"]["num_questions"] == 8
    assert results["methods"]["name_only"]["num_questions"] == 0
    page = (tmp_path / "out" / "results.md").read_text()
    assert page.count("not measurable on this backbone") == len(TASKS)


def test_generic_questions_show_what_a_reader_adapter_costs(tiny_llava, tmp_path):
    from datasets import concatenate_datasets, load_from_disk

    processor = ICPTProcessor.from_backbone(tiny_llava, max_prompt_length=4)
    torch.manual_seed(0)
    model = ICPTForConditionalGeneration.from_backbone(tiny_llava, prompt_token_id=processor.prompt_token_id,
                                                       reader_lora_rank=2, **TINY)
    with torch.no_grad():  # a reader adapter that changes the language model's answers
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.normal_(0, 0.5)
    model.save_pretrained(tmp_path / "icpt")
    generic = generic_episodes(World(seed=0, num_identities=60), "held_out", num_episodes=6)
    episodes = concatenate_datasets([load_from_disk(_world_dataset(tmp_path / "episodes")), generic])
    results = harness.run_evaluation(
        episodes, checkpoints={"icpt": tmp_path / "icpt"}, backbone=tiny_llava,
        methods=["icpt", "raw_references", "raw_references_adapted"], reference_counts=[], swap_questions=0,
        ceiling_margin=-1, max_new_tokens={task: 3 for task in (*TASKS, "generic")}, progress=False,
    )
    for name in ("icpt", "raw_references"):
        assert results["methods"][name]["results"]["all"]["generic_f1"]["n"] == 6
    cost = results["adapter_cost"]
    assert cost["generic_f1"]["n"] == 6 and cost["raw_references_recognition"]["n"] == 3
    assert cost["generic_f1"]["difference"] == pytest.approx(
        results["methods"]["icpt"]["results"]["all"]["generic_f1"]["mean"]
        - results["methods"]["raw_references"]["results"]["all"]["generic_f1"]["mean"])
    claim = next(c for c in results["claims"] if c["claim"].startswith("The reader adapter costs"))
    assert claim["verdict"] in ("supported", "refuted", "cannot decide") and "word F1" in claim["evidence"]
    assert results["swap_test"]["num_questions"] == 0


def test_swap_references_gives_each_named_concept_another_identitys_photos(tmp_path):
    from datasets import load_from_disk

    prepared = eval_episodes(load_from_disk(_world_dataset(tmp_path / "episodes")))
    swapped = harness.swap_references(prepared, prepared, seed=0)
    assert [e.question for e in swapped] == [e.question for e in prepared]
    for before, after in zip(prepared, swapped):
        named = {c.name for c in before.named_concepts}
        for old, new in zip(before.concepts, after.concepts):
            assert new.name == old.name  # the same label ...
            if old.name in named:  # ... with the photos of another identity
                assert new.description != old.description and new.key != old.key
                assert new.reference_values != old.reference_values
            else:
                assert new is old
    assert harness.swap_references(prepared, prepared, seed=0)[0].concepts[0].key == swapped[0].concepts[0].key


def test_baselines_without_checkpoints_and_without_descriptions(tiny_llava, tmp_path):
    from datasets import load_from_disk

    results = harness.run_evaluation(
        load_from_disk(_world_dataset(tmp_path / "episodes", descriptions=False)), backbone=tiny_llava, methods=["icpt", "name_only", "text_description"],
        num_episodes=3, reference_counts=[], max_new_tokens={task: 3 for task in ("caption", "presence")},
        progress=False,
    )
    rows = results["methods"]
    assert rows["icpt"]["status"] == "skipped" and "--checkpoint icpt=PATH" in rows["icpt"]["note"]
    assert rows["text_description"]["status"] == "skipped" and "description" in rows["text_description"]["note"]
    assert rows["name_only"]["status"] == "ok" and results["data"]["num_episodes"] == [3]
    assert rows["name_only"]["num_questions"] == 3 and results["reference_method"] is None
    assert results["reference_sweep"]["methods"] == {}


def test_clear_errors(default_preset, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="train_icpt.py"):
        harness.run_evaluation(_concept_dataset(), checkpoints={"icpt": str(tmp_path / "nothing")})
    with pytest.raises(ValueError, match="--separation_weight 0"):
        harness.run_evaluation(_concept_dataset(),
                                  checkpoints={"icpt_no_separation": str(default_preset.checkpoints["icpt"])})
    with pytest.raises(ValueError, match="Unknown methods"):
        harness.run_evaluation(_concept_dataset(), methods=["icpt", "magic"])
    with pytest.raises(SystemExit):
        main(["--checkpoint", "magic=somewhere"])
    monkeypatch.setattr(harness, "DEFAULT_DIR", tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="pretrain_world_backbone.py"):
        main(["--preset", "default"])
    (tmp_path / "backbone_only").mkdir()
    (tmp_path / "backbone_only" / "backbone").symlink_to(default_preset.root / "backbone")
    monkeypatch.setattr(harness, "DEFAULT_DIR", tmp_path / "backbone_only")
    with pytest.raises(FileNotFoundError, match="projector is not at .*train_icpt.py .*--output_dir"):
        main(["--preset", "default"])


def test_compare_runs_pairs_two_runs_on_their_shared_questions(tmp_path):
    """Two backbones' runs: the difference is taken question by question, over the questions both asked."""

    def write(folder, predictions):
        folder.mkdir()
        rows = [{"question_id": f"q{i}", "method": "raw_references", "task": "vqa", "splits": ["look_alike"] * (i % 2),
                 "score": float(correct), "positive": None} for i, correct in predictions.items()]
        (folder / "outcomes.jsonl").write_text("\n".join(json.dumps(row) for row in rows))

    write(tmp_path / "before", {i: i < 10 for i in range(40)})  # 10 of 40 right
    write(tmp_path / "after", {i: i < 30 for i in range(44)})  # 30 of the same 40 right (and 4 more questions)
    [row] = compare_runs(tmp_path / "before", tmp_path / "after")
    assert (row["method"], row["metric"]) == ("raw_references", "vqa")
    assert row["before"]["mean"] == 0.25 and row["after"]["mean"] == 0.75  # on the 40 shared questions only
    assert row["difference"]["difference"] == 0.5 and row["difference"]["low"] > 0.3
    assert row["difference"]["p_value"] < 0.01
    [odd] = compare_runs(tmp_path / "before", tmp_path / "after", split="look_alike")
    assert odd["before"]["n"] == 20
    with pytest.raises(ValueError, match="No method in both runs among icpt"):
        compare_runs(tmp_path / "before", tmp_path / "after", methods=["icpt"])
    with pytest.raises(FileNotFoundError, match="pass an output folder of `icpt eval`"):
        compare_runs(tmp_path, tmp_path / "after")
