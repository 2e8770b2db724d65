"""`icpt eval` (icpt/commands/eval.py): a whole preset run on a tiny backbone, and its clear errors."""

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from helpers.evaluation import TINY, concept_dataset, world_dataset
from icpt.commands.eval import main
from icpt.episodes import TASKS
from icpt.evaluation import checkpoints, harness
from icpt.evaluation.checkpoints import CHECKPOINT_METHODS, METHODS
from icpt.evaluation.scoring import METRICS, SPLITS
from modeling_icpt import ICPTForConditionalGeneration
from processing_icpt import ICPTProcessor

# icpt with a (fresh) reader adapter and without L_dec and L_sep, as shipped; its frozen-reader ablation has no
# adapter, its "with" ablations switch L_dec and L_sep on
ABLATION_OVERRIDES = {"icpt": {"reader_lora_rank": 2}, "icpt_frozen_reader": {}, "icpt_fixed_length": {"adaptive_length": False},
                      "icpt_with_decoupling": {"decoupling_weight": 0.1}, "icpt_with_separation": {"separation_weight": 1.0},
                      "icpt_no_identity_targets": {"identity_target_weight": 0.0}}
# the ablations that would not change icpt (it has the length rule, no L_dec, no L_sep)
INAPPLICABLE = {"icpt_adaptive_length", "icpt_no_decoupling", "icpt_no_separation"}


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


def test_preset_run_writes_results_outcomes_plots_and_the_docs_page(default_preset, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(checkpoints, "DEFAULT_DIR", default_preset.root)
    episodes = world_dataset(tmp_path / "episodes")
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
    # icpt has the length rule, so its adaptive-length ablation does not apply, nor do no-L_dec and no-L_sep ones
    assert list(results["methods"]) == [m for m in METHODS if m not in INAPPLICABLE]
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
        if name in INAPPLICABLE:
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
    # a frozen-reader ablation against icpt (on all questions: the tiny world's splits may lack a method's questions)
    targets = next(claim for claim in results["claims"] if claim["claim"].startswith("Identity targets"))
    assert "differ in two parts" in targets["evidence"]
    sweep = results["reference_sweep"]
    assert sweep["counts"] == [1, 2] and set(sweep["methods"]) == {"icpt", "raw_references"}

    # one line per answer: every method on the same questions (test-time training on a subsample)
    lines = [json.loads(line) for line in (out / results["outcomes"]).read_text().splitlines()]
    assert len(lines) == 8 * (len(METHODS) - 1 - len(INAPPLICABLE)) + 3  # test-time training: 3 questions
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


def test_clear_errors(default_preset, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="train_icpt.py"):
        harness.run_evaluation(concept_dataset(), checkpoints={"icpt": str(tmp_path / "nothing")})
    with pytest.raises(ValueError, match="switches that part on .*--separation_weight 1"):
        harness.run_evaluation(concept_dataset(),
                               checkpoints={"icpt_with_separation": str(default_preset.checkpoints["icpt"])})
    with pytest.raises(ValueError, match="Unknown methods"):
        harness.run_evaluation(concept_dataset(), methods=["icpt", "magic"])
    with pytest.raises(SystemExit):
        main(["--checkpoint", "magic=somewhere"])
    with pytest.raises(ValueError, match="--world-split applies to the generated world"):
        main(["--episodes", str(tmp_path), "--world-split", "look_alike"])
    monkeypatch.setattr(checkpoints, "DEFAULT_DIR", tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="pretrain_world_backbone.py"):
        main(["--preset", "default"])
    (tmp_path / "backbone_only").mkdir()
    (tmp_path / "backbone_only" / "backbone").symlink_to(default_preset.root / "backbone")
    monkeypatch.setattr(checkpoints, "DEFAULT_DIR", tmp_path / "backbone_only")
    with pytest.raises(FileNotFoundError, match="projector is not at .*train_icpt.py .*--output_dir"):
        main(["--preset", "default"])
