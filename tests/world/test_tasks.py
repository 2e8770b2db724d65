"""The questions and episodes of the generated world (icpt/world/tasks.py): splits, schema, task coverage."""

import re

import numpy as np
import pytest

from icpt.episodes import EPISODE_FEATURES, TAGS, TASKS
from icpt.world.tasks import (
    LABELLED_MAX_REFERENCES,
    PRETRAINING_TASKS,
    TEXT_QA_QUESTIONS,
    WorldTasks,
    attribute_answer,
    build_episodes,
    either_or_attribute,
    iter_episodes,
    pretraining_dataset,
    split_words,
    vocabulary,
)


@pytest.fixture(scope="module")
def held_out_episodes(world):
    return build_episodes(world, "held_out", num_episodes=48, seed=1)


def record_renders(world, monkeypatch):
    """Record the identities and environment of every render the world makes."""
    calls = []
    render = world.render

    def recording_render(identity_ids, environment, rng, **kwargs):
        environment = world.environment(environment) if isinstance(environment, str) else environment
        calls.append((list(identity_ids), environment))
        return render(identity_ids, environment, rng, **kwargs)

    monkeypatch.setattr(world, "render", recording_render)
    return calls


def test_training_data_never_shows_held_out_identities_or_set_b(world, monkeypatch):
    calls = record_renders(world, monkeypatch)
    build_episodes(world, "train", num_episodes=36, seed=4)
    pretraining = pretraining_dataset(world, num_examples=30, seed=4)
    assert set(pretraining["task"]) == set(PRETRAINING_TASKS)
    for images, task in zip(pretraining["images"], pretraining["task"]):  # labelled: up to 4 concepts' photos
        if task == "label_copy":  # text only
            assert images == []
        else:
            assert 1 <= len(images) <= (4 * LABELLED_MAX_REFERENCES + 1 if task == "labelled_question" else 6)
    bank = world.prerender(world.split("train")[:10], renders_per_identity=2)
    tasks = WorldTasks(world, bank=bank)
    rng = np.random.default_rng(0)
    examples = [tasks.sample(rng, PRETRAINING_TASKS[i % len(PRETRAINING_TASKS)]) for i in range(30)]
    held_out = set(world.split("held_out"))
    assert calls
    for identity_ids, environment in calls:
        assert not held_out & set(identity_ids)
        assert environment.set == "A"
    for example in examples:
        assert not held_out & set(example.identity_ids)
        assert all(world.environment(name).set == "A" for name in example.environments)


def test_render_bank_must_match_the_split(world):
    held_out_bank = world.prerender(world.split("held_out")[:2], renders_per_identity=1)
    with pytest.raises(ValueError, match="outside the 'train' split"):
        WorldTasks(world, bank=held_out_bank)
    set_b_bank = world.prerender(world.split("train")[:2], renders_per_identity=1, environment_set="B")
    with pytest.raises(ValueError, match="outside set A"):
        WorldTasks(world, bank=set_b_bank)


def test_held_out_episodes_use_held_out_identities_references_from_a(world, monkeypatch):
    calls = record_renders(world, monkeypatch)
    train = set(world.split("train"))
    query_sets = []
    for row in iter_episodes(world, "held_out", num_episodes=24, seed=5):
        renders, query = (calls, None) if row["image"] is None else (calls[:-1], calls[-1])
        assert len(renders) == sum(len(concept["references"]) for concept in row["concepts"])
        for identity_ids, environment in renders:  # the references
            assert len(identity_ids) == 1 and environment.set == "A"
        if query is not None:
            query_sets.append(query[1].set)
            assert ("environment_shift" in row["tags"]) == (query[1].set == "B")
        assert not train & {i for identity_ids, _ in calls for i in identity_ids}
        calls.clear()
    assert set(query_sets) == {"A", "B"}


def test_compare_examples(world):
    tasks = WorldTasks(world, identities="held_out", query_environments=("A", "B"))
    rng = np.random.default_rng(0)
    twin_anchor = next(i for i in world.split("held_out") if i in world.look_alike_of)
    negative = tasks.compare(rng, num_references=3, positive=False, look_alike=True, anchor=twin_anchor)
    assert len(negative.images) == 4 and negative.answer == "no" and "look_alike" in negative.tags
    assert negative.identity_ids[0] == twin_anchor and world.look_alike_of[twin_anchor] in negative.identity_ids
    positive = tasks.compare(rng, num_references=1, positive=True, anchor=twin_anchor)
    assert positive.answer == "yes" and positive.identity_ids.count(twin_anchor) == 2
    lone = next(i for i in world.split("held_out") if i not in world.look_alike_of)
    with pytest.raises(ValueError, match="no look-alike twin"):
        tasks.compare(rng, look_alike=True, anchor=lone)


def test_episode_schema_and_consistency(held_out_episodes):
    assert held_out_episodes.features == EPISODE_FEATURES
    assert held_out_episodes.column_names == list(EPISODE_FEATURES)
    for row in held_out_episodes:
        names = [concept["name"] for concept in row["concepts"]]
        assert all(re.fullmatch(r"<w\d+>", name) for name in names) and len(set(names)) == len(names)
        for concept in row["concepts"]:
            assert 1 <= len(concept["references"]) <= 5 and len(concept["masks"]) == len(concept["references"])
            assert concept["references"][0].size == (64, 64) and concept["masks"][0].mode == "L"
        assert row["task"] in TASKS and set(row["tags"]) <= set(TAGS)
        assert set(row["present"]) <= set(names) and row["target"] in names + [""]
        assert ("multi_concept" in row["tags"]) == (len(row["present"]) > 1)
        assert (row["image"] is None) == (row["task"] == "text_qa")
        if row["task"] in ("vqa", "text_qa"):
            assert len(row["options"]) == 2 and row["answer"] in row["options"]
        else:
            assert row["options"] == []
        if row["task"] == "recognition":
            assert row["answer"] == ("Yes" if row["target"] in row["present"] else "No")
        if row["task"] == "presence":
            assert row["answer"] == (", ".join(row["present"]) or "none")
            asked = re.findall(r"<w\d+>", row["question"])  # answered in the order the question lists them
            assert sorted(asked) == sorted(names) and row["present"] == [
                name for name in asked if name in row["present"]
            ]
        if row["task"] == "caption":  # the answer names exactly the concepts present
            assert [name for name in names if name in row["answer"]] == [n for n in names if n in row["present"]]


def test_captions_ask_about_concepts_that_are_often_absent(world):
    """Half of the concepts a caption question names are in its photo, so naming them all without looking is
    right on about half of them (the name accuracy's guessing floor), not on all."""
    captions = build_episodes(world, "held_out", num_episodes=80, seed=4, tasks=("caption",))
    asked = [re.findall(r"<w\d+>", question) for question in captions["question"]]
    share_present = sum(len(p) for p in captions["present"]) / sum(len(names) for names in asked)
    assert 0.35 < share_present < 0.65
    assert any(not present for present in captions["present"])  # photos with none of them


def test_every_task_and_tag_is_present(world, held_out_episodes):
    assert set(held_out_episodes["task"]) == set(TASKS)
    assert {tag for tags in held_out_episodes["tags"] for tag in tags} == set(TAGS)
    train = build_episodes(world, "train", num_episodes=12, seed=6)
    assert set(train["task"]) == set(TASKS)
    assert "environment_shift" not in {tag for tags in train["tags"] for tag in tags}


def test_named_questions_show_what_they_say(world):
    tasks = WorldTasks(world, look_alike_fraction=0.5)
    rng = np.random.default_rng(3)
    for index in range(24):
        positive = index % 2 == 0
        example = tasks.named_question(rng, num_references=2, kind="recognition", positive=positive)
        anchor, scene = example.identity_ids[0], example.identity_ids[1:]
        assert example.answer == ("Yes" if positive else "No") and (anchor in scene) == positive
        if "look_alike" in example.tags and not positive:
            assert world.look_alike_of[anchor] in scene
        assert example.question.startswith("the object is <image> <image>.\n<image> Can you see the object")
        assert len(example.images) == 3 and "<w" not in example.question
    colour = tasks.named_question(rng, kind="colour")
    assert colour.answer == world.identities[colour.identity_ids[0]].colour
    assert colour.identity_ids[0] in colour.identity_ids[1:]
    with pytest.raises(ValueError, match="only recognition"):
        tasks.named_question(rng, kind="colour", positive=False)


def test_labelled_questions_put_the_named_concepts_photos_before_the_question(world):
    tasks = WorldTasks(world)
    rng = np.random.default_rng(5)
    for task in TASKS * 4:
        example = tasks.labelled_question(rng, task)
        assert example.task == "labelled_question" and example.tags[0] == task
        *preamble, asked = example.question.split("\n")
        named = re.findall(r"<w\d+>", asked)
        # one "<label> is <image> ..." line per label the question names, each label once, in some order
        assert sorted(line.split(" is ")[0] for line in preamble) == sorted(set(named))
        assert all(re.fullmatch(r"<w\d+> is( <image>){1,%d}\." % LABELLED_MAX_REFERENCES, line) for line in preamble)
        # every placeholder has its image; the query image (none for text questions) comes right before the question
        assert example.question.count("<image>") == len(example.images)
        assert asked.startswith("<image> ") == (task != "text_qa")
        if task == "presence":
            assert example.answer == "none" or set(example.answer.split(", ")) <= set(named)
        if task == "caption":
            assert example.answer.startswith("a photo of ")
    with pytest.raises(ValueError, match="Unknown labelled task"):
        tasks.labelled_question(rng, "generic")


def test_label_copy_answers_with_labels_its_question_gave(world):
    tasks = WorldTasks(world)
    rng = np.random.default_rng(9)
    kinds = set()
    for _ in range(40):
        example = tasks.label_copy(rng)
        assert example.images == [] and example.task == "label_copy"
        assert not set(example.identity_ids) & set(world.split("held_out"))
        if example.question.startswith("Write "):  # a list written back in order
            kinds.add("list")
            assert example.question == f"Write {example.answer}."
            assert 3 <= len(example.answer.split(", ")) <= 8
        elif " or " in example.question:  # an either/or question about the one described label
            kinds.add("options")
            preamble, asked = example.question.split("\n")
            name, description = preamble[:-1].split(" is ", 1)
            identity = world.identities[example.identity_ids[0]]
            assert description == identity.description and name in asked
            assert f" {example.answer} or " in asked or asked.endswith(f" or {example.answer}?")
        else:  # the label whose description is asked
            kinds.add("described")
            *preamble, asked = example.question.split("\n")
            given = dict(line[:-1].split(" is ", 1) for line in preamble)
            assert len(preamble) == len(example.identity_ids) and asked.startswith("What is ")
            assert given[example.answer] == asked[len("What is ") : -1]
            assert re.fullmatch(r"<w\d+>", example.answer)
    assert kinds == {"list", "described", "options"}


def test_vocabulary_covers_every_text(world, held_out_episodes):
    words = set(vocabulary())
    texts = list(held_out_episodes["question"]) + list(held_out_episodes["answer"])
    texts += [option for options in held_out_episodes["options"] for option in options]
    rng = np.random.default_rng(0)
    tasks = WorldTasks(world)
    for index in range(30):
        example = tasks.sample(rng, PRETRAINING_TASKS[index % len(PRETRAINING_TASKS)])
        texts += [example.question, example.answer]
    texts += [identity.description for identity in world.identities]
    used = {word for text in texts for word in split_words(text) if not word.startswith("<")}
    assert used <= words, sorted(used - words)


def test_clear_errors(world):
    with pytest.raises(ValueError, match="Unknown identity split"):
        world.split("test")
    with pytest.raises(ValueError, match="Unknown environment set"):
        world.environment_set("C")
    with pytest.raises(ValueError, match="0-4 distinct identities"):
        world.render([0, 1, 2, 3, 4], world.environments[0], 0)
    with pytest.raises(ValueError, match="Unknown tasks"):
        build_episodes(world, "train", num_episodes=1, tasks=("dance",))


def test_either_or_attribute_reads_back_what_a_question_asks(world, held_out_episodes):
    # every attribute, worded for a label and for "the object", with each identity's right answer first or second
    for first, second in zip(world.identities[:40], world.identities[40:80]):
        for attribute, template in TEXT_QA_QUESTIONS.items():
            right, other = attribute_answer(first, attribute), attribute_answer(second, attribute)
            for name in ("<w12>", "the object"):
                for options in ((right, other), (other, right)):
                    question = template.format(name=name, first=options[0], second=options[1])
                    assert either_or_attribute(question, right) == attribute, question
    # the episodes' own text either/or questions, after their preamble; other tasks have none
    text_qa = [e for e in held_out_episodes if e["task"] == "text_qa"]
    assert text_qa and all(either_or_attribute(e["question"], e["answer"]) in TEXT_QA_QUESTIONS for e in text_qa)
    assert all(either_or_attribute(e["question"], e["answer"]) is None for e in held_out_episodes
               if e["task"] in ("recognition", "caption", "presence"))
