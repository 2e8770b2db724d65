"""Pushing and pulling ICPT projectors and concept banks through the local Hub endpoint (tests/helpers/hub_server.py)."""

import subprocess
import sys
import textwrap

import pytest
import torch
from huggingface_hub import HfApi, ModelCard

from helpers.hub_server import DEFAULT_USER, DUMMY_TOKEN, local_hub
from helpers.remote_code import without_project_paths
from helpers.tiny_backbones import IMAGE_PLACEHOLDERS
from icpt.cards import card_for, projector_card
from modeling_icpt import ConceptBank, ICPTForConditionalGeneration
from processing_icpt import ICPTProcessor

BACKBONE_REPO = f"{DEFAULT_USER}/tiny-llava"
PROJECTOR_REPO = f"{DEFAULT_USER}/icpt-tiny-llava"
BANK_REPO = f"{DEFAULT_USER}/my-pets"
QUESTION = IMAGE_PLACEHOLDERS["llava"] + "Is <bo> next to <kiki>?"


@pytest.fixture
def hub(tiny_backbone_dirs):
    """The local Hub, holding the tiny LLaVA backbone as `test-user/tiny-llava`."""
    with local_hub() as endpoint:
        HfApi().create_repo(BACKBONE_REPO)
        HfApi().upload_folder(repo_id=BACKBONE_REPO, folder_path=str(tiny_backbone_dirs["llava"]))
        yield endpoint


@pytest.fixture
def icpt(tiny_backbone_dirs, images):
    """A tiny ICPT model and processor whose config names the backbone by its Hub id, and a bank."""
    path = tiny_backbone_dirs["llava"]
    torch.manual_seed(0)
    processor = ICPTProcessor.from_backbone(path, max_prompt_length=4)
    model = ICPTForConditionalGeneration.from_backbone(
        path, max_prompt_length=4, min_prompt_length=2, projector_hidden_size=32, projector_heads=2, projector_layers=1
    )
    model.config.base_model_name_or_path = BACKBONE_REPO
    references = {"<bo>": images[:2], "<kiki>": images[2:3]}
    bank = model.encode_concepts(**processor.prepare_references(references))
    return model, processor, bank, references


def generate(model, processor, bank, image):
    inputs = processor(text=[QUESTION], images=[[image]], concepts=bank)
    return model.generate(**inputs, concepts=bank, max_new_tokens=5, do_sample=False)


def test_push_then_pull_gives_identical_generations(hub, icpt, images, tmp_path):
    model, processor, bank, references = icpt
    expected = generate(model, processor, bank, images[4])

    model.push_to_hub(PROJECTOR_REPO, processor=processor, card=card_for(model))
    bank.push_to_hub(BANK_REPO, card=card_for(bank))

    pulled_model = ICPTForConditionalGeneration.from_pretrained(PROJECTOR_REPO, cache_dir=tmp_path / "fresh")
    pulled_processor = ICPTProcessor.from_pretrained(PROJECTOR_REPO, cache_dir=tmp_path / "fresh")
    pulled_bank = ConceptBank.from_pretrained(BANK_REPO, cache_dir=tmp_path / "fresh")

    files = set(HfApi().list_repo_files(PROJECTOR_REPO))
    assert {"config.json", "model.safetensors", "modeling_icpt.py", "concept_bank.py", "hub_io.py", "processing_icpt.py", "image_io.py",
            "processor_config.json", "README.md"} <= files
    # a bank repository holds vectors and its card, never the photos
    assert set(HfApi().list_repo_files(BANK_REPO)) - {".gitattributes"} == {"concept_bank.safetensors", "README.md"}
    assert pulled_bank.labels == bank.labels and torch.equal(pulled_bank.prompts, bank.prompts)
    assert torch.equal(generate(pulled_model, pulled_processor, pulled_bank, images[4]), expected)
    # the pulled projector encodes the same concepts to the same bank
    fresh_bank = pulled_model.encode_concepts(**pulled_processor.prepare_references(references))
    assert torch.equal(generate(pulled_model, pulled_processor, fresh_bank, images[4]), expected)
    # the backbone came from the Hub too, by the name in the pushed config
    assert any(request.startswith(f"GET /{BACKBONE_REPO}/resolve/") for request in hub.requests)
    assert hub.unhandled == []


def test_a_personalized_checkpoint_is_one_repository(hub, icpt, images, tmp_path):
    model, processor, bank, _ = icpt
    expected = generate(model, processor, bank, images[4])
    model.push_to_hub(PROJECTOR_REPO, processor=processor, concepts=bank)
    assert "concept_bank.safetensors" in HfApi().list_repo_files(PROJECTOR_REPO)
    pulled_model = ICPTForConditionalGeneration.from_pretrained(PROJECTOR_REPO, cache_dir=tmp_path / "fresh")
    pulled_processor = ICPTProcessor.from_pretrained(PROJECTOR_REPO, cache_dir=tmp_path / "fresh")
    assert pulled_model.concepts.labels == pulled_processor.concepts.labels == bank.labels
    inputs = pulled_processor(text=[QUESTION], images=[[images[4]]])  # no bank passed anywhere
    assert torch.equal(pulled_model.generate(**inputs, max_new_tokens=5, do_sample=False), expected)


def test_the_cards_read_back_are_the_icpt_cards(hub, icpt):
    model, processor, bank, _ = icpt
    model.push_to_hub(PROJECTOR_REPO, processor=processor, card=card_for(model))
    bank.push_to_hub(BANK_REPO, card=card_for(bank))

    projector = ModelCard.load(PROJECTOR_REPO)
    assert projector.data.base_model == BACKBONE_REPO
    assert projector.data.pipeline_tag == "image-text-to-text"
    assert {"icpt", "custom_code"} <= set(projector.data.tags)
    assert "an ICPT projector" in projector.text and f'from_pretrained("{PROJECTOR_REPO}"' in projector.text
    concepts = ModelCard.load(BANK_REPO)
    assert "icpt-concept-bank" in concepts.data.tags
    assert all(f"| `{label}` | {length} |" in concepts.text for label, length in bank.lengths.items())


def test_without_a_card_a_push_writes_none(hub, icpt):
    model, processor, bank, _ = icpt
    model.push_to_hub(PROJECTOR_REPO, processor=processor)
    bank.push_to_hub(BANK_REPO)
    assert "README.md" not in HfApi().list_repo_files(PROJECTOR_REPO)
    assert "README.md" not in HfApi().list_repo_files(BANK_REPO)


def test_a_given_card_is_pushed_as_is_and_the_namespace_comes_from_the_token(hub, icpt):
    model, processor, _, _ = icpt
    card = projector_card(repo_id=PROJECTOR_REPO, base_model=BACKBONE_REPO, training_data="Two tiny test episodes.",
                          prompt_length_stats={"mean": 3.0})
    commit = model.push_to_hub("icpt-tiny-llava", card=card, commit_message="first push")
    assert commit.repo_url.repo_id == PROJECTOR_REPO
    assert "Two tiny test episodes." in ModelCard.load(PROJECTOR_REPO).text
    # one commit with the files, then one with the card: the upload's own commit has no README
    upload_files = HfApi().list_repo_files(PROJECTOR_REPO, revision=commit.oid)
    assert "model.safetensors" in upload_files and "README.md" not in upload_files
    assert HfApi().model_info(PROJECTOR_REPO).sha != commit.oid


@pytest.mark.slow  # a fresh interpreter imports torch and transformers: about 10 s
def test_pulled_repository_loads_as_remote_code_in_a_separate_process(hub, icpt, images, tmp_path):
    model, processor, bank, _ = icpt
    model.push_to_hub(PROJECTOR_REPO, processor=processor)
    bank.push_to_hub(BANK_REPO)
    torch.save({"expected": generate(model, processor, bank, images[4])}, tmp_path / "expected.pt")
    images[4].save(tmp_path / "query.png")
    script = textwrap.dedent(f"""
        import sys, torch
        from PIL import Image
        for name in ("modeling_icpt", "processing_icpt", "icpt"):
            try:
                __import__(name)
            except ImportError:
                pass
            else:
                raise SystemExit(f"{{name}} must not be importable here")
        from transformers import AutoModelForImageTextToText, AutoProcessor
        model = AutoModelForImageTextToText.from_pretrained({PROJECTOR_REPO!r}, trust_remote_code=True)
        processor = AutoProcessor.from_pretrained({PROJECTOR_REPO!r}, trust_remote_code=True)
        assert type(model).__name__ == "ICPTForConditionalGeneration", type(model)
        assert type(processor).__name__ == "ICPTProcessor", type(processor)
        # the bank class travels with the remote code: a user without the icpt package can pull banks
        ConceptBank = sys.modules[type(model).__module__].ConceptBank
        bank = ConceptBank.from_pretrained({BANK_REPO!r})
        inputs = processor(text=[{QUESTION!r}], images=[[Image.open(r"{tmp_path}/query.png").convert("RGB")]],
                           concepts=bank)
        out = model.generate(**inputs, concepts=bank, max_new_tokens=5, do_sample=False)
        assert torch.equal(out, torch.load(r"{tmp_path}/expected.pt")["expected"]), out
        print("REMOTE-OK")
    """)
    env = {"PATH": "/usr/bin:/bin", "HF_ENDPOINT": str(hub), "HF_TOKEN": DUMMY_TOKEN, "HF_HUB_OFFLINE": "0",
           "HF_HOME": str(tmp_path / "child-hf"), "NO_PROXY": "127.0.0.1,localhost", "PYTHONNOUSERSITE": "1",
           "OMP_NUM_THREADS": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    result = subprocess.run([sys.executable, "-I", "-S", "-c", without_project_paths() + script],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert "REMOTE-OK" in result.stdout, result.stdout + result.stderr
    assert any(request.startswith(f"GET /{PROJECTOR_REPO}/resolve/") and request.endswith("/modeling_icpt.py")
               for request in hub.requests)
    assert hub.unhandled == []


# ---------------------------------------------------------------- bad input


def test_a_local_backbone_path_fails_before_anything_is_uploaded(hub, icpt, tiny_backbone_dirs):
    model, processor, _, _ = icpt
    model.config.base_model_name_or_path = str(tiny_backbone_dirs["llava"])
    before = len(hub.requests)
    with pytest.raises(ValueError, match="base_model_name_or_path"):
        model.push_to_hub(PROJECTOR_REPO, processor=processor, card=card_for(model))
    assert not any("/commit/" in request or "repos/create" in request for request in hub.requests[before:])


def test_bad_push_and_pull_arguments_name_the_fix(hub, icpt, tmp_path):
    model, _, bank, _ = icpt
    with pytest.raises(ValueError, match="unknown arguments \\['max_shard_sise'\\]"):
        model.push_to_hub(PROJECTOR_REPO, max_shard_sise="1GB")
    with pytest.raises(FileNotFoundError, match="no concept_bank.safetensors"):
        ConceptBank.from_pretrained(BACKBONE_REPO)
    with pytest.raises(FileNotFoundError, match="check the repo id"):
        ConceptBank.from_pretrained(f"{DEFAULT_USER}/no-such-bank")
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        ConceptBank.from_pretrained(tmp_path / "missing" / "bank.safetensors")
    bank.base_model_name_or_path = None
    with pytest.raises(ValueError, match="concept bank card"):
        bank.push_to_hub(BANK_REPO, card=card_for(bank))
