"""Model cards from hub_cards/: rendering, metadata, and validation (local round trips and the local Hub)."""

import importlib.util
import shutil
from pathlib import Path

import pytest
from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData, metadata_load
from huggingface_hub.repocard_data import model_index_to_eval_results

from helpers.hub_server import local_hub
from icpt.cards import concept_bank_card, projector_card, template_path


HARNESS_RESULTS = [
    {
        "task_type": "image-text-to-text",
        "task_name": "Recognition",
        "dataset_type": "yollava",
        "dataset_name": "Yo'LLaVA",
        "dataset_split": "test",
        "metric_type": "accuracy",
        "metric_name": "weighted recognition accuracy",
        "metric_value": 0.8125,
    },
    {
        "task_type": "visual-question-answering",
        "dataset_type": "yollava",
        "dataset_name": "Yo'LLaVA",
        "metric_type": "exact_match",
        "metric_value": 0.75,
    },
]


def make_projector_card(eval_results):
    return projector_card(
        repo_id="test-user/icpt-tiny",
        base_model="test-user/tiny-llava",
        training_data="The ICPT generated world: 160 identities, 64 × 64 renders.",
        prompt_length_stats={"mean": 6.25, "min": 2, "max": 16},
        eval_results=eval_results,
    )


def make_bank_card():
    return concept_bank_card(
        repo_id="test-user/my-pets",
        base_model="test-user/tiny-llava",
        labels=["<bo>", "<mia>", "kiki|mug"],
        prompt_lengths={"<bo>": 4, "<mia>": 7, "kiki|mug": 3},
        projector="test-user/icpt-tiny",
    )


ALL_CARDS = {
    "projector with eval results": lambda: make_projector_card(HARNESS_RESULTS),
    "projector without eval results": lambda: make_projector_card(None),
    "concept bank": make_bank_card,
}


@pytest.mark.parametrize("with_results", [True, False], ids=["with eval results", "without eval results"])
def test_projector_card_metadata_and_text(with_results):
    card = make_projector_card(HARNESS_RESULTS if with_results else None)

    data = card.data
    assert (data.library_name, data.pipeline_tag, data.base_model) == (
        "transformers", "image-text-to-text", "test-user/tiny-llava"
    )
    assert data.tags[:2] == ["icpt", "custom_code"]
    assert "The ICPT generated world: 160 identities" in card.text
    assert "| mean | 6.25 |" in card.text and "| max | 16 |" in card.text
    assert 'from_pretrained("test-user/icpt-tiny", trust_remote_code=True)' in card.text
    assert "model.encode_concepts(**processor.prepare_references(" in card.text  # the model's own API
    if with_results:
        assert data.eval_results == [EvalResult(**entry) for entry in HARNESS_RESULTS]
        assert data.to_dict()["model-index"][0]["name"] == "icpt-tiny"
        assert "| Recognition | Yo'LLaVA | test | weighted recognition accuracy | 0.8125 |" in card.text
        assert "| visual-question-answering | Yo'LLaVA |  | exact_match | 0.75 |" in card.text
    else:
        assert not data.eval_results
        assert "model-index" not in data.to_dict() and "model_name" not in data.to_dict()
        assert "has not been evaluated yet" in card.text


def test_concept_bank_card_lists_each_concept_and_no_photos():
    card = make_bank_card()

    assert (card.data.library_name, card.data.pipeline_tag, card.data.base_model) == (
        "transformers", "image-text-to-text", "test-user/tiny-llava"
    )
    assert card.data.tags == ["icpt", "custom_code", "icpt-concept-bank"]
    # Labels are code spans, so "<bo>" is shown rather than parsed as an HTML tag; "|" is escaped for the table.
    assert "| `<bo>` | 4 |" in card.text and "| `<mia>` | 7 |" in card.text
    assert "| `kiki\\|mug` | 3 |" in card.text
    assert "3 concept(s), 14 prompt token(s) in all" in card.text
    assert "No photos are stored here" in card.text
    assert 'hf_hub_download("test-user/my-pets", "concept_bank.safetensors")' in card.text


@pytest.mark.parametrize("make_card", ALL_CARDS.values(), ids=ALL_CARDS.keys())
def test_card_metadata_survives_save_and_load(make_card, tmp_path):
    # Offline validation: the YAML block must parse back into the same ModelCardData and model-index.
    card = make_card()
    path = tmp_path / "README.md"
    card.save(path)

    metadata = metadata_load(path)
    assert metadata == card.data.to_dict()
    assert ModelCardData(**metadata).to_dict() == card.data.to_dict()
    assert ModelCard.load(path).content == card.content
    if "model-index" in metadata:
        model_name, results = model_index_to_eval_results(metadata["model-index"])
        assert (model_name, results) == ("icpt-tiny", card.data.eval_results)


@pytest.mark.parametrize("make_card", ALL_CARDS.values(), ids=ALL_CARDS.keys())
def test_card_validates_and_pushes_on_the_local_hub(make_card):
    card = make_card()
    with local_hub() as endpoint:
        card.validate()  # POST /api/validate-yaml: raises ValueError on invalid metadata
        HfApi().create_repo("test-user/card", exist_ok=True)
        card.push_to_hub("test-user/card")
        assert ModelCard.load("test-user/card").content == card.content
        assert endpoint.unhandled == []


def test_local_hub_validation_rejects_malformed_metadata():
    # The validator must be able to fail, or the test above shows nothing. ModelCard normalizes its
    # metadata when it serializes, so send raw README text: the commit validates it before uploading.
    good = make_projector_card(HARNESS_RESULTS).content
    bad_tags = good.replace("tags:\n- icpt\n- custom_code\n", "tags: icpt\n")
    bad_index = good.replace("      type: image-text-to-text\n", "", 1)  # a result whose task has no type
    assert bad_tags != good and bad_index != good
    with local_hub():
        api = HfApi()
        api.create_repo("test-user/card")
        for content, error in ((bad_tags, '"tags" must be a list'), (bad_index, '"model-index" is malformed')):
            with pytest.raises(ValueError, match=error):
                api.upload_file(path_or_fileobj=content.encode(), path_in_repo="README.md", repo_id="test-user/card")
        api.upload_file(path_or_fileobj=good.encode(), path_in_repo="README.md", repo_id="test-user/card")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"eval_results": [{"task_type": "x", "metric_value": 1.0, "score": 2}]}, "missing keys"),
        ({"eval_results": [{**HARNESS_RESULTS[1], "metric_value": float("nan")}]}, "finite number"),
        ({"base_model": "/home/me/tiny-llava"}, "Hub repo id"),
        ({"repo_id": "a/b/c"}, "Hub repo id"),
        ({"training_data": "  "}, "training_data"),
        ({"prompt_length_stats": {"mean": "six"}}, "prompt_length_stats"),
    ],
)
def test_projector_card_rejects_bad_input_with_a_clear_error(kwargs, message):
    arguments = {"repo_id": "test-user/icpt-tiny", "base_model": "test-user/tiny-llava", "training_data": "World.",
                 **kwargs}
    with pytest.raises(ValueError, match=message):
        projector_card(**arguments)


@pytest.mark.parametrize(
    "labels, lengths, message",
    [
        ([], {}, "at least one label"),
        (["<bo>", "<bo>"], {"<bo>": 2}, "more than once"),
        (["<bo>"], {"<bo>": 2, "<mia>": 3}, "one entry per label"),
        (["<bo>"], {"<bo>": 0}, "positive int"),
    ],
)
def test_concept_bank_card_rejects_bad_input_with_a_clear_error(labels, lengths, message):
    with pytest.raises(ValueError, match=message):
        concept_bank_card(repo_id="test-user/b", base_model="test-user/m", labels=labels, prompt_lengths=lengths)


def _load_cards_module_at(package_dir: Path):
    shutil.copy(Path(__file__).parents[1] / "icpt" / "cards.py", package_dir / "cards.py")
    spec = importlib.util.spec_from_file_location("installed_icpt_cards", package_dir / "cards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_templates_are_found_in_a_checkout_and_in_an_installed_package(tmp_path):
    checkout = Path(__file__).parents[1] / "hub_cards"
    assert template_path("icpt_projector_card.md") == checkout / "icpt_projector_card.md"

    # An installed package has no hub_cards/ beside it: the templates are package data in icpt/hub_cards/.
    installed = tmp_path / "site-packages" / "icpt"
    (installed / "hub_cards").mkdir(parents=True)
    shutil.copy(checkout / "concept_bank_card.md", installed / "hub_cards")
    cards = _load_cards_module_at(installed)
    assert cards.template_path("concept_bank_card.md") == installed / "hub_cards" / "concept_bank_card.md"
    with pytest.raises(FileNotFoundError, match="icpt_projector_card.md"):
        cards.template_path("icpt_projector_card.md")
