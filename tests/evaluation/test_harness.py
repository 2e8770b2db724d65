"""The evaluation harness (icpt/evaluation/harness.py): runs on a tiny backbone: tasks below the ceiling, generic
questions, the swap test, baselines without checkpoints."""

import re

import pytest
import torch

from helpers.evaluation import TINY, world_dataset
from helpers.training import random_reader_adapter
from icpt.episodes import TASKS
from icpt.evaluation import harness
from icpt.evaluation.harness import question_id
from icpt.evaluation.methods import eval_episodes
from icpt.world.tasks import generic_episodes
from icpt.world.world import World
from modeling_icpt import ICPTForConditionalGeneration
from processing_icpt import ICPTProcessor


def test_tasks_below_the_ceiling_are_marked_and_not_run(tiny_llava, tmp_path):
    from datasets import load_from_disk

    results = harness.run_evaluation(
        load_from_disk(world_dataset(tmp_path / "episodes")), backbone=tiny_llava,
        methods=["raw_references", "name_only"], reference_counts=[], ceiling_margin=0.99,
        max_new_tokens={task: 3 for task in TASKS}, progress=False, output_dir=tmp_path / "out",
    )
    assert not any(row["measurable"] for row in results["ceiling"].values())  # nothing beats chance by 0.99
    # the floor a caption must beat: the better of naming every concept its question names and naming none
    [caption] = [row for row in load_from_disk(str(tmp_path / "episodes")) if row["task"] == "caption"]
    share_present = len(caption["present"]) / len(re.findall(r"<w\d+>", caption["question"]))
    assert results["ceiling"]["caption"]["chance"] == pytest.approx(max(share_present, 1 - share_present))
    assert results["ceiling"]["recognition"]["chance"] == 0.5
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
    random_reader_adapter(model, seed=0)  # a reader adapter that changes the language model's answers
    model.save_pretrained(tmp_path / "icpt")
    generic = generic_episodes(World(seed=0, num_identities=60), "held_out", num_episodes=6)
    episodes = concatenate_datasets([load_from_disk(world_dataset(tmp_path / "episodes")), generic])
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

    prepared = eval_episodes(load_from_disk(world_dataset(tmp_path / "episodes")))
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
        load_from_disk(world_dataset(tmp_path / "episodes", descriptions=False)), backbone=tiny_llava, methods=["icpt", "name_only", "text_description"],
        num_episodes=3, reference_counts=[], max_new_tokens={task: 3 for task in ("caption", "presence")},
        progress=False,
    )
    rows = results["methods"]
    assert rows["icpt"]["status"] == "skipped" and "--checkpoint icpt=PATH" in rows["icpt"]["note"]
    assert rows["text_description"]["status"] == "skipped" and "description" in rows["text_description"]["note"]
    assert rows["name_only"]["status"] == "ok" and results["data"]["num_episodes"] == [3]
    assert rows["name_only"]["num_questions"] == 3 and results["reference_method"] is None
    assert results["reference_sweep"]["methods"] == {}


def test_without_a_ceiling_method_every_task_is_run_and_the_page_says_so(tiny_llava, tmp_path, caplog):
    from datasets import load_from_disk

    with caplog.at_level("WARNING", logger=harness.__name__):
        results = harness.run_evaluation(
            load_from_disk(world_dataset(tmp_path / "episodes")), backbone=tiny_llava, methods=["name_only"],
            num_episodes=3, reference_counts=[], max_new_tokens={task: 3 for task in TASKS}, progress=False,
            output_dir=tmp_path / "out",
        )
    # said even without progress output: such a run cannot be paired with one that has a ceiling
    assert any("No ceiling method" in record.getMessage() and "raw_references" in record.getMessage()
               for record in caplog.records if record.levelname == "WARNING")
    assert all(row["measurable"] and row["method"] is None for row in results["ceiling"].values())
    assert results["methods"]["name_only"]["num_questions"] == 3
    page = (tmp_path / "out" / "results.md").read_text()
    assert "No ceiling method" in page and "Each task is first answered by the ceiling methods" not in page


def test_the_swap_test_asks_the_same_questions_whether_or_not_the_sweep_runs(tiny_llava, tmp_path):
    from icpt.world.tasks import build_episodes

    episodes = build_episodes(World(seed=0, num_identities=60), "held_out", num_episodes=30, seed=3,
                              tasks=("recognition",))
    asked = []
    for sweep_questions in (0, 4):
        results = harness.run_evaluation(
            episodes, backbone=tiny_llava, methods=["raw_references"], reference_counts=[1],
            sweep_questions=sweep_questions, swap_questions=2, ceiling_margin=-1, max_new_tokens={"recognition": 3},
            progress=False,
        )
        assert results["reference_sweep"]["num_questions"] == sweep_questions
        asked.append(results["swap_test"]["question_ids"])
        # each swapped question keeps its answers and whose photos stood behind the label: another identity's
        answers = results["swap_test"]["methods"]["raw_references"]["answers"]
        assert [a["question_id"] for a in answers] == asked[-1]
        own = {question_id(e): [c.description for c in e.named_concepts] for e in eval_episodes(episodes)}
        assert all(a["asks_about"] == own[a["question_id"]] != a["photos_of"] and a["photos_of"] for a in answers)
        assert all(isinstance(a["before"], str) and isinstance(a["after"], str) for a in answers)
    assert len(asked[0]) == 2 and asked[0] == asked[1]


def test_a_split_table_notes_the_methods_that_hold_few_of_its_questions(tiny_llava, tmp_path):
    from datasets import load_from_disk

    # the world's recognition questions, all marked look-alikes: every method holds 3 of that split's questions
    episodes = load_from_disk(world_dataset(tmp_path / "episodes")).filter(lambda e: e["task"] == "recognition")
    episodes = episodes.map(lambda e: {"tags": ["look_alike"]})
    harness.run_evaluation(episodes, backbone=tiny_llava, methods=["raw_references", "name_only"],
                           reference_counts=[], ceiling_margin=-1.0, swap_questions=0, progress=False,
                           output_dir=tmp_path / "out")
    page = (tmp_path / "out" / "results.md").read_text()
    look_alikes = page.split("### Look-alikes")[1].split("\n### ")[0]
    assert "Fewer than 100 questions of this split: `raw_references` (3), `name_only` (3);" in look_alikes
    assert "`icpt eval --world-split look_alike`" in look_alikes
    environment = page.split("### Environment shift")[1].split("\n### ")[0]
    assert "No recognition question of this split." in environment and "Fewer than" not in environment
