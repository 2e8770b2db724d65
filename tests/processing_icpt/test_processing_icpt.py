"""ICPTProcessor: slots, references, saving, and the errors bad input gets; and, property-based (the strategies in
helpers/strategies.py), whatever a user hands `prepare_references`, `encode_concepts`, the processor or `generate`
either works or raises `ICPTInputError`."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from transformers import AutoProcessor

from helpers.images import random_image
from helpers.strategies import (
    IMAGE,
    SETTINGS,
    conversations,
    images,
    labels,
    mostly,
    must_succeed_or_raise_input_error,
    odd_objects,
    references,
    sentences,
)
from modeling_icpt import ConceptBank, ICPTForConditionalGeneration
from processing_icpt import ICPTInputError, ICPTProcessor


@pytest.fixture
def processor(tiny_backbone_dirs):
    return ICPTProcessor.from_backbone(tiny_backbone_dirs["llava"], max_prompt_length=4)


def fake_bank(lengths: dict) -> ConceptBank:
    count = len(lengths)
    return ConceptBank(list(lengths), torch.zeros(count, 4, 32), torch.tensor(list(lengths.values())),
                       torch.zeros(count), torch.zeros(count, 32))


def slot_runs(ids, slot_id):
    runs, current = [], 0
    for token in ids.tolist() + [None]:
        if token == slot_id:
            current += 1
        elif current:
            runs.append(current)
            current = 0
    return runs


def test_prompt_token_is_reserved_once(processor):
    token_id = processor.prompt_token_id
    assert processor.tokenizer.convert_ids_to_tokens(token_id) == "<icpt>"
    assert processor.tokenizer("<icpt><icpt>", add_special_tokens=False)["input_ids"] == [token_id, token_id]


def test_bank_lengths_decide_the_slots(processor, images):
    bank = fake_bank({"<bo>": 3, "<kiki>": 2})
    inputs = processor(text=["<image>Is <bo> with <kiki>?"], images=[[images[0]]], concepts=bank)
    assert slot_runs(inputs["input_ids"][0], processor.prompt_token_id) == [3, 2]
    assert inputs["prompt_concepts"].tolist() == [[0, 1]]
    text = processor.decode(inputs["input_ids"][0])
    assert text.index("<bo> is") < text.index("Is <bo> with")


def test_messages_get_the_preamble_in_the_first_user_turn(processor, images):
    bank = fake_bank({"<bo>": 2})
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is <bo> here?"}]}]
    inputs = processor(messages=messages, images=[[images[0]]], concepts=bank)
    text = processor.decode(inputs["input_ids"][0])
    assert "<bo> is <icpt><icpt>." in text and text.index("<icpt>") < text.index("Is <bo> here?")
    assert slot_runs(inputs["input_ids"][0], processor.prompt_token_id) == [2]


def test_per_sample_references_index_a_flat_concept_list(processor, images):
    refs = [{"<bo>": images[:2]}, [{"name": "<kiki>", "references": images[2:3]}, {"name": "<bo>", "references": images[3:5]}]]
    inputs = processor(text=["<image>Is <bo> here?", "<image><kiki> or <bo>?"], images=[[images[0]], [images[1]]],
                       references=refs, prompt_lengths=[2, {"<kiki>": 1}])
    assert inputs["concept_names"] == ["<bo>", "<kiki>", "<bo>"]
    assert inputs["reference_concept_index"].tolist() == [0, 0, 1, 2, 2]
    assert inputs["prompt_concepts"].tolist() == [[0, -1], [1, 2]]
    assert slot_runs(inputs["input_ids"][1], processor.prompt_token_id) == [1, 4]
    assert inputs["reference_pixel_values"].shape[0] == 5


def test_images_in_odd_modes_and_paths_are_accepted(processor, tmp_path):
    grey = random_image(1, mode="L")
    rgba = random_image(2, mode="RGBA")
    path = tmp_path / "ref.png"
    random_image(3).save(path)
    refs = processor.prepare_references({"<bo>": [grey, rgba, str(path)]})
    assert refs["reference_pixel_values"].shape[0] == 3


def test_save_and_load_through_auto_processor(processor, tmp_path, images):
    processor.save_pretrained(tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, ICPTProcessor)
    assert loaded.prompt_token_id == processor.prompt_token_id and loaded.max_prompt_length == 4
    bank = fake_bank({"<bo>": 2})
    a = processor(text=["<image>Is <bo> here?"], images=[[images[0]]], concepts=bank)
    b = loaded(text=["<image>Is <bo> here?"], images=[[images[0]]], concepts=bank)
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["pixel_values"], b["pixel_values"])


# ---------------------------------------------------------------- bad input: each error names the problem


def test_unknown_label_in_text(processor, images):
    with pytest.raises(ICPTInputError, match="<mia>"):
        processor(text=["<image>Is <mia> here?"], images=[[images[0]]], concepts=fake_bank({"<bo>": 2}))


def test_same_label_twice(processor, images):
    refs = [{"name": "<bo>", "references": images[:1]}, {"name": "<bo>", "references": images[1:2]}]
    with pytest.raises(ICPTInputError, match="given twice"):
        processor.prepare_references(refs)
    with pytest.raises(ValueError, match="more than once"):
        fake_bank({"<bo>": 2}).merge(fake_bank({"<bo>": 3}))


def test_zero_references(processor):
    with pytest.raises(ICPTInputError, match="zero reference images"):
        processor.prepare_references({"<bo>": []})


def test_missing_and_corrupt_image_files(processor, tmp_path):
    with pytest.raises(ICPTInputError, match="does not exist"):
        processor.prepare_references({"<bo>": [tmp_path / "nope.jpg"]})
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    with pytest.raises(ICPTInputError, match="not a readable image"):
        processor.prepare_references({"<bo>": [corrupt]})


def test_bad_labels(processor, images):
    for label in ("bo", "<two words>", "<image>", "<icpt>"):
        with pytest.raises(ICPTInputError):
            processor.prepare_references({label: images[:1]})


def test_prompt_token_written_by_the_user_is_refused(processor, images):
    with pytest.raises(ICPTInputError, match="reserved prompt token"):
        processor(text=["<image><icpt> Is <bo> here?"], images=[[images[0]]], concepts=fake_bank({"<bo>": 2}))


def test_a_large_bank_costs_a_question_only_the_concepts_it_names(processor, images):
    lengths = {f"<c{i}>": 1 + i % 4 for i in range(100)}
    large, small = fake_bank(lengths), fake_bank({"<c37>": lengths["<c37>"]})
    text = ["<image>Is <c37> here?", "<image>Is <c5> with <c37>?"]
    from_large = processor(text=text[:1], images=[[images[0]]], concepts=large)
    from_small = processor(text=text[:1], images=[[images[0]]], concepts=small)
    assert torch.equal(from_large["input_ids"], from_small["input_ids"]) and from_large["concept_names"] == ["<c37>"]
    both = processor(text=text, images=[[images[0]], [images[1]]], concepts=large)
    assert both["concept_names"] == ["<c5>", "<c37>"]  # bank order
    assert both["prompt_concepts"].tolist() == [[1, -1], [0, 1]]
    assert [slot_runs(ids, processor.prompt_token_id) for ids in both["input_ids"]] == [[2], [2, 2]]


class TinyICPT(tuple):
    """(model, processor, bank) with a short repr, so that hypothesis' failure reports stay readable."""

    def __repr__(self):
        return "TinyICPT(llava)"


@pytest.fixture(scope="module")
def llava(tiny_backbone_dirs):
    path = tiny_backbone_dirs["llava"]
    torch.manual_seed(0)
    processor = ICPTProcessor.from_backbone(path, max_prompt_length=4)
    model = ICPTForConditionalGeneration.from_backbone(
        path, max_prompt_length=4, min_prompt_length=2, projector_hidden_size=32, projector_heads=2, projector_layers=1
    ).eval()
    bank = model.encode_concepts(**processor.prepare_references(
        {"<bo>": [Image.new("RGB", (20, 20), "red")], "<kiki>": [Image.new("RGB", (9, 30), "blue")]}))
    # one thread: these thousand tiny calls run 4x slower on two threads of a shared machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield TinyICPT((model, processor, bank))
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Image files a user might point at: good, missing, a folder, text, truncated, empty."""
    root = tmp_path_factory.mktemp("property-files")
    Image.new("RGB", (17, 5), "green").save(root / "good.png")
    Image.new("I;16", (8, 8), 300).save(root / "sixteen_bit.png")
    Image.new("P", (6, 6)).save(root / "palette.gif")
    (root / "text.jpg").write_text("not an image")
    (root / "empty.png").write_bytes(b"")
    good = (root / "good.png").read_bytes()
    (root / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "folder.png").mkdir()
    names = ["good.png", "sixteen_bit.png", "palette.gif", "text.jpg", "empty.png", "truncated.png", "folder.png",
             "missing.png"]
    return tuple([root / name for name in names] + [str(root / "good.png"), str(root / "missing.png")])


@settings(max_examples=550, **SETTINGS)
@given(data=st.data())
def test_prepare_references_and_encode_concepts(llava, files, data):
    model, processor, _ = llava
    refs = data.draw(references(processor, files))
    prepared = must_succeed_or_raise_input_error(lambda: processor.prepare_references(refs))
    if prepared is not None:
        bank = must_succeed_or_raise_input_error(lambda: model.encode_concepts(**prepared))
        if bank is not None:
            assert len(bank) == len(prepared["concept_names"])
            assert all(1 <= length <= 4 for length in bank.lengths.values())
            assert torch.isfinite(bank.prompts).all()


@settings(max_examples=450, **SETTINGS)
@given(data=st.data())
def test_call_with_text(llava, files, data):
    model, processor, bank = llava
    batch = data.draw(st.integers(1, 3))
    # most samples carry as many image placeholders as images; some do not
    placeholders = [data.draw(st.integers(0, 2)) for _ in range(batch)]
    text = [IMAGE * k + data.draw(sentences(processor)) for k in placeholders]
    query = [data.draw(st.lists(images(files), min_size=k, max_size=k)) for k in placeholders]
    text = data.draw(mostly(st.sampled_from([text, text[0]]),
                            st.one_of(st.lists(sentences(processor), max_size=3), odd_objects()), 4))
    query = data.draw(mostly(st.just(query), st.one_of(
        st.none(), images(files),
        st.lists(st.one_of(st.none(), images(files), st.lists(images(files), max_size=2)), max_size=batch + 1)), 4))
    how = data.draw(mostly(st.sampled_from(["bank", "references", "none"]), st.just("both"), 10))
    kwargs = {}
    if how in ("bank", "both"):
        kwargs["concepts"] = bank
    if how in ("references", "both"):
        kwargs["references"] = data.draw(references(processor, files))
        kwargs["prompt_lengths"] = data.draw(st.one_of(
            st.none(), st.none(), st.integers(-2, 6), st.dictionaries(labels(processor), st.integers(-1, 6), max_size=2),
            st.lists(st.one_of(st.none(), st.integers(0, 5)), max_size=3)))
    outputs = must_succeed_or_raise_input_error(lambda: processor(text=text, images=query, **kwargs))
    if outputs is not None and how == "bank":
        # each text gets the slots of the bank's concepts it names, and no others
        slots = (outputs["input_ids"] == processor.prompt_token_id).sum(dim=1).tolist()
        texts = [text] if isinstance(text, str) else text
        assert slots == [sum(n for label, n in bank.lengths.items() if label in t) for t in texts]


@settings(max_examples=300, **SETTINGS)
@given(data=st.data())
def test_call_with_messages(llava, files, data):
    model, processor, bank = llava
    chats = data.draw(st.lists(conversations(processor, files), min_size=1, max_size=2))
    messages = [chat for chat, _ in chats]
    messages = messages[0] if len(messages) == 1 and data.draw(st.booleans()) else messages
    query = data.draw(st.one_of(st.just([chat_images for _, chat_images in chats]), st.none(),
                                st.lists(st.lists(images(files), max_size=2), max_size=3)))
    concepts = data.draw(st.sampled_from([bank, bank, None]))
    outputs = must_succeed_or_raise_input_error(
        lambda: processor(messages=messages, images=query, concepts=concepts, padding_side="left"))
    if outputs is not None and concepts is not None and outputs["input_ids"].shape[1] <= 512:
        # accepted inputs also run through the model (the very long ones only through the processor: time)
        out = must_succeed_or_raise_input_error(
            lambda: model.generate(**outputs, concepts=concepts, max_new_tokens=1, do_sample=False))
        assert out is None or out.shape[0] == outputs["input_ids"].shape[0]
