"""ICPTProcessor: slots, references, saving, and the errors bad input gets."""

import pytest
import torch
from transformers import AutoProcessor

from helpers.images import random_image
from modeling_icpt import ConceptBank
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


def test_images_as_data_uris_and_urls_go_through_transformers_loader(monkeypatch):
    import base64
    import io

    from processing_icpt import image_io, load_image

    photo = random_image(5)
    buffer = io.BytesIO()
    photo.save(buffer, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    assert list(load_image(uri).getdata()) == list(photo.convert("RGB").getdata())
    with pytest.raises(ICPTInputError, match="could not be read as an image.*data URI"):
        load_image("data:image/png;base64,bm90IGFuIGltYWdl")  # "not an image"
    # a URL is fetched by transformers' loader (replaced here: tests never reach the network)
    seen = []
    monkeypatch.setattr(image_io, "load_remote_image", lambda url, timeout=None: seen.append(url) or photo)
    assert load_image("https://example.com/bo.png").size == photo.size and seen == ["https://example.com/bo.png"]
