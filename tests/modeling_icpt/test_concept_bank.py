"""ConceptBank: every malformed bank is one ICPTInputError, on construction and on load; saves are atomic; any damaged
bank file (property-based, helpers/strategies.py) loads or raises `ICPTInputError`."""

import json
import os
import subprocess
import sys

import pytest
import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from helpers.strategies import SETTINGS, bank_files
from modeling_icpt import ConceptBank, ICPTForConditionalGeneration, ICPTInputError
from modeling_icpt.concept_bank import backbone_fingerprint


def make_bank(labels=("<bo>", "<kiki>"), rows=4, width=8, lengths=None, fingerprint="f" * 16) -> ConceptBank:
    count = len(labels)
    lengths = torch.tensor(lengths if lengths is not None else [rows] * count)
    return ConceptBank(list(labels), torch.randn(count, rows, width), lengths, torch.rand(count),
                       torch.randn(count, width), "some/backbone", fingerprint)


def write_bank(path, tensors, metadata):
    save_file(tensors, str(path), metadata=metadata)
    return path


def good_tensors(count=2, rows=4, width=8):
    return {"prompts": torch.randn(count, rows, width), "lengths": torch.full((count,), rows),
            "complexity": torch.rand(count), "descriptors": torch.randn(count, width)}


GOOD_METADATA = {"format": "icpt-concept-bank", "labels": json.dumps(["<bo>", "<kiki>"]),
                 "base_model_name_or_path": "", "backbone_fingerprint": "f" * 16}


def test_save_and_load_round_trip(tmp_path):
    bank = make_bank(lengths=[3, 4])
    bank.save(tmp_path / "bank.safetensors")
    loaded = ConceptBank.load(tmp_path / "bank.safetensors")
    assert loaded.labels == bank.labels and loaded.lengths == {"<bo>": 3, "<kiki>": 4}
    assert torch.equal(loaded.prompts, bank.prompts) and loaded.backbone_fingerprint == bank.backbone_fingerprint
    assert [p.name for p in tmp_path.iterdir()] == ["bank.safetensors"]  # no temporary left behind


@pytest.mark.parametrize("change, phrase", [
    (dict(lengths=[0, 4]), "outside 1..4"),
    (dict(lengths=[-3, 4]), "outside 1..4"),
    (dict(lengths=[4, 9]), "outside 1..4"),  # more rows than the bank holds
    (dict(labels=("<bo>", "<bo>")), "more than once"),
    (dict(labels=("bo", "<kiki>")), "angle brackets"),
    (dict(labels=()), "holds no concepts"),
])
def test_malformed_banks_are_refused_on_construction(change, phrase):
    with pytest.raises(ICPTInputError, match=phrase):
        make_bank(**change)


def test_non_finite_rows_and_wrong_shapes_are_refused():
    bank = make_bank()
    prompts = bank.prompts.clone()
    prompts[0, 1, 2] = float("nan")
    with pytest.raises(ICPTInputError, match="NaN or infinite"):
        ConceptBank(bank.labels, prompts, bank._lengths, bank.complexity, bank.descriptors)
    with pytest.raises(ICPTInputError, match="3 entries for 2 labels"):
        ConceptBank(bank.labels, bank.prompts, torch.tensor([4, 4, 4]), bank.complexity, bank.descriptors)
    with pytest.raises(ICPTInputError, match="lengths must be integers"):
        ConceptBank(bank.labels, bank.prompts, bank._lengths.float(), bank.complexity, bank.descriptors)
    with pytest.raises(ICPTInputError, match="descriptors are 3 wide"):
        ConceptBank(bank.labels, bank.prompts, bank._lengths, bank.complexity, torch.zeros(2, 3))


@pytest.mark.parametrize("name, tensors, metadata, phrase", [
    ("no labels", good_tensors(), {"format": "icpt-concept-bank"}, "no readable 'labels'"),
    ("labels not JSON", good_tensors(), {**GOOD_METADATA, "labels": "<bo>,<kiki>"}, "no readable 'labels'"),
    ("no format tag", good_tensors(), {"labels": GOOD_METADATA["labels"]}, "not an ICPT concept bank"),
    ("missing tensor", {k: v for k, v in good_tensors().items() if k != "descriptors"}, GOOD_METADATA, "missing tensors"),
    ("zero length", {**good_tensors(), "lengths": torch.tensor([0, 4])}, GOOD_METADATA, "outside 1..4"),
    ("negative length", {**good_tensors(), "lengths": torch.tensor([-3, 4])}, GOOD_METADATA, "outside 1..4"),
    ("NaN rows", {**good_tensors(), "prompts": torch.full((2, 4, 8), float("nan"))}, GOOD_METADATA, "NaN"),
])
def test_malformed_bank_files_are_refused_on_load(tmp_path, name, tensors, metadata, phrase):
    path = write_bank(tmp_path / "bank.safetensors", tensors, metadata)
    with pytest.raises(ICPTInputError, match=phrase) as error:
        ConceptBank.load(path)
    assert str(path) in str(error.value), name


def test_damaged_and_truncated_files_are_refused_on_load(tmp_path):
    good = tmp_path / "good.safetensors"
    make_bank().save(good)
    (tmp_path / "truncated.safetensors").write_bytes(good.read_bytes()[:100])
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00\x01 not a bank")
    for name in ("truncated.safetensors", "garbage.safetensors"):
        with pytest.raises(ICPTInputError, match="not a readable concept bank"):
            ConceptBank.load(tmp_path / name)


def test_a_local_looking_path_that_does_not_exist_never_reaches_the_hub(tmp_path, monkeypatch):
    import huggingface_hub

    def no_network(*args, **kwargs):
        raise AssertionError("a local path was sent to the Hub")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for typo in ("my_bnak.safetensors", "./banks/mine", str(tmp_path / "nowhere" / "bank.safetensors"), "~/x/y/z"):
        with pytest.raises(FileNotFoundError, match="no such file or folder"):
            ConceptBank.from_pretrained(typo)


def test_an_interrupted_save_leaves_a_temporary_that_the_next_save_removes(tmp_path):
    bank, path = make_bank(), tmp_path / "bank.safetensors"
    # a process killed half-way through save(): its temporary stays behind
    script = (f"import os, sys; sys.path[:0] = {sys.path!r}\n"
              "import safetensors.torch as st\n"
              "from modeling_icpt import ConceptBank\n"
              "st.save_file = lambda *a, **k: (open(a[1], 'wb').write(b'x' * 1000), os._exit(9))\n"
              "import modeling_icpt.concept_bank as cb; cb.save_file = st.save_file\n"
              f"ConceptBank.load({str(path)!r}).save({str(path)!r})\n")
    bank.save(path)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 9, result.stderr
    leftovers = [p for p in tmp_path.iterdir() if p.name != "bank.safetensors"]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".bank.safetensors.tmp-")
    assert torch.equal(ConceptBank.load(path).prompts, bank.prompts)  # the bank itself is intact
    bank.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["bank.safetensors"]


def test_a_temporary_of_a_running_save_is_left_alone(tmp_path):
    path = tmp_path / "bank.safetensors"
    running = tmp_path / f".bank.safetensors.tmp-{os.getpid()}-abc"
    running.write_bytes(b"being written")
    make_bank().save(path)
    assert running.exists()


def test_merge_and_select(tmp_path):
    a, b = make_bank(("<bo>", "<kiki>")), make_bank(("<mia>",))
    merged = a.merge(b)
    assert merged.labels == ["<bo>", "<kiki>", "<mia>"] and merged.index("<mia>") == 2
    assert merged.select(["<mia>", "<bo>"]).labels == ["<mia>", "<bo>"]
    three = make_bank(("<a>",)).merge(make_bank(("<b>",)), make_bank(("<c>", "<d>")))
    assert three.labels == ["<a>", "<b>", "<c>", "<d>"] and three.prompts.shape[0] == 4
    with pytest.raises(ICPTInputError, match="more than once"):
        a.merge(a)
    with pytest.raises(ICPTInputError, match="different backbones"):
        a.merge(make_bank(("<mia>",), fingerprint="0" * 16))


def test_fingerprint_tells_backbones_apart_and_survives_dtype(tiny_backbone_dirs, tmp_path):
    from helpers.tiny_backbones import build_tiny_backbone
    from transformers import AutoModelForImageTextToText

    llava = AutoModelForImageTextToText.from_pretrained(tiny_backbone_dirs["llava"])
    again = AutoModelForImageTextToText.from_pretrained(tiny_backbone_dirs["llava"], dtype=torch.bfloat16)
    torch.manual_seed(123)
    other = AutoModelForImageTextToText.from_pretrained(build_tiny_backbone("llava", tmp_path / "other", seed=123))
    assert other.config.text_config.hidden_size == llava.config.text_config.hidden_size  # the same width
    assert backbone_fingerprint(llava) == backbone_fingerprint(again)
    assert backbone_fingerprint(llava) != backbone_fingerprint(other)


def test_a_bank_of_another_backbone_of_the_same_width_is_refused(tiny_backbone_dirs, tmp_path, images):
    from processing_icpt import ICPTProcessor
    from helpers.tiny_backbones import IMAGE_PLACEHOLDERS, build_tiny_backbone

    settings = dict(max_prompt_length=4, min_prompt_length=2, projector_hidden_size=32, projector_heads=2,
                    projector_layers=1)
    processor = ICPTProcessor.from_backbone(tiny_backbone_dirs["llava"], max_prompt_length=4)
    ours = ICPTForConditionalGeneration.from_backbone(tiny_backbone_dirs["llava"], **settings)
    theirs = ICPTForConditionalGeneration.from_backbone(build_tiny_backbone("llava", tmp_path / "b", seed=123), **settings)
    bank = theirs.encode_concepts(**processor.prepare_references({"<bo>": images[:2]}))
    inputs = processor(text=[IMAGE_PLACEHOLDERS["llava"] + "Is <bo> here?"], images=[[images[3]]], concepts=bank)
    with pytest.raises(ICPTInputError, match="made for another backbone"):
        ours.generate(**inputs, concepts=bank, max_new_tokens=2)


def keyed_bank(labels, width=8, rows=4, fingerprint="f" * 16) -> ConceptBank:
    count = len(labels)
    keys = torch.nn.functional.normalize(torch.randn(count, 6), dim=-1).half()
    return ConceptBank(list(labels), torch.randn(count, rows, width), torch.randint(1, rows + 1, (count,)),
                       torch.rand(count), torch.randn(count, width), "some/backbone", fingerprint, keys)


def expected_rows(banks, label):
    for bank in banks:
        if label in bank:
            return bank.rows(label)
    raise KeyError(label)


def test_add_remove_rename_in_place_keep_every_concept_whole():
    first, second, third = keyed_bank(["<a>", "<b>"]), keyed_bank(["<c>"]), keyed_bank(["<d>", "<e>", "<f>"])
    originals = [first.select(first.labels), second, third]  # copies: `first` changes below
    bank = first
    assert bank.add(second) is bank and bank.add(third) is bank
    assert bank.labels == ["<a>", "<b>", "<c>", "<d>", "<e>", "<f>"] and len(bank) == 6
    capacity = bank._storage["prompts"].shape[0]
    assert capacity >= 6  # storage grows ahead: the next add writes into reserved room
    for label in bank.labels:
        assert torch.equal(bank.rows(label), expected_rows(originals, label))
    bank.remove("<b>")  # the last concept takes its place
    assert bank.labels == ["<a>", "<f>", "<c>", "<d>", "<e>"] and bank.index("<f>") == 1 and "<b>" not in bank
    bank.rename("<c>", "<cat>")
    assert bank.index("<cat>") == 2 and "<c>" not in bank
    assert torch.equal(bank.rows("<cat>"), expected_rows(originals, "<c>"))
    assert torch.equal(bank.keys[1], third.keys[2]) and bank._storage["prompts"].shape[0] == capacity
    assert bank.lengths == {label: int(bank._lengths[i]) for i, label in enumerate(bank.labels)}
    # the caller's tensors are never written to
    assert second.labels == ["<c>"] and torch.equal(second.rows("<c>"), originals[1].rows("<c>"))


def test_changes_are_refused_with_a_reason():
    bank = keyed_bank(["<a>", "<b>"])
    with pytest.raises(ICPTInputError, match="more than once.*rename"):
        bank.add(keyed_bank(["<b>"]))
    with pytest.raises(ICPTInputError, match="different backbones"):
        bank.add(keyed_bank(["<z>"], fingerprint="0" * 16))
    with pytest.raises(ICPTInputError, match="already holds '<b>'"):
        bank.rename("<a>", "<b>")
    with pytest.raises(ICPTInputError, match="angle brackets"):
        bank.rename("<a>", "a")
    with pytest.raises(ICPTInputError, match="at least one concept"):
        bank.remove("<a>", "<b>")
    with pytest.raises(KeyError, match="Unknown concept"):
        bank.remove("<zz>")
    assert bank.labels == ["<a>", "<b>"]  # nothing changed


def test_a_loaded_bank_is_mapped_and_changing_it_leaves_the_file_alone(tmp_path):
    path = tmp_path / "bank.safetensors"
    bank = keyed_bank([f"<c{i}>" for i in range(5)])
    bank.save(path)
    loaded = ConceptBank.load(path)
    assert torch.equal(loaded.keys, bank.keys) and loaded.keys.dtype == torch.float16
    before = path.read_bytes()
    loaded.remove("<c0>").add(keyed_bank(["<new>"])).rename("<c1>", "<one>")
    assert path.read_bytes() == before
    again = ConceptBank.load(path)
    assert again.labels == bank.labels and torch.equal(again.prompts, bank.prompts)


def test_a_bank_without_keys_cannot_retrieve_and_says_so():
    bank = make_bank()
    assert bank.keys is None
    with pytest.raises(ICPTInputError, match="no retrieval keys"):
        bank.retrieve(torch.randn(1, 6))
    keyed = keyed_bank(["<a>", "<b>"])
    assert keyed.merge(bank).keys is None  # merging with a keyless bank drops the keys
    with pytest.raises(ICPTInputError, match="do not match"):
        keyed.retrieve(torch.randn(1, 5))


def test_retrieve_ranks_by_cosine_similarity():
    bank = keyed_bank([f"<c{i}>" for i in range(20)])
    labels, scores = bank.retrieve(bank.keys[[4, 11]].float(), top_k=3, return_scores=True)
    assert [row[0] for row in labels] == ["<c4>", "<c11>"] and scores.shape == (2, 3)
    assert torch.all(scores[:, :-1] >= scores[:, 1:])  # best first
    assert len(bank.retrieve(bank.keys[:1], top_k=50)[0]) == 20  # never more than the bank holds


def test_complexity_not_measured_is_allowed_infinite_is_not():
    bank = make_bank()
    ConceptBank(bank.labels, bank.prompts, bank._lengths, torch.full((2,), float("nan")), bank.descriptors)
    with pytest.raises(ICPTInputError, match="infinite"):
        ConceptBank(bank.labels, bank.prompts, bank._lengths, torch.full((2,), float("inf")), bank.descriptors)


@settings(max_examples=300, **SETTINGS)
@given(bank=bank_files(), damage=st.sampled_from(["none"] * 9 + ["truncate", "garbage", "empty"]))
def test_loading_any_bank_file(tmp_path_factory, bank, damage):
    tensors, metadata = bank
    path = tmp_path_factory.mktemp("bank") / "bank.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage" + bytes(range(256)))
    elif damage == "empty":
        path.write_bytes(b"")
    try:
        loaded = ConceptBank.load(path)
    except ICPTInputError:
        event("refused")
        return
    event("loaded")
    # what loads is a usable bank: every length within its rows, every value finite
    assert all(1 <= n <= loaded.prompts.shape[1] for n in loaded.lengths.values())
    assert torch.isfinite(loaded.prompts.float()).all() and len(set(loaded.labels)) == len(loaded)
