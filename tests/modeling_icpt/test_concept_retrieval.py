"""Retrieval (which known concepts a photo shows), the reference-feature cache, batched complexity."""

import pytest
import torch

from helpers.images import random_image
from helpers.tiny_backbones import IMAGE_PLACEHOLDERS
from modeling_icpt import ICPTForConditionalGeneration, ICPTInputError
from modeling_icpt.concept_projector import concept_complexity
from modeling_icpt.modeling_icpt import batched_complexity
from modeling_icpt.reference_features import REFERENCE_FEATURE_CACHE
from processing_icpt import ICPTProcessor

SETTINGS = dict(max_prompt_length=4, min_prompt_length=2, projector_hidden_size=32, projector_heads=2,
                projector_layers=1)


@pytest.fixture
def tiny(tiny_backbone_dirs):
    torch.manual_seed(0)
    processor = ICPTProcessor.from_backbone(tiny_backbone_dirs["llava"], max_prompt_length=4)
    model = ICPTForConditionalGeneration.from_backbone(tiny_backbone_dirs["llava"], **SETTINGS).eval()
    return model, processor


def test_retrieval_finds_the_concept_a_photo_shows_and_the_prompt_takes_it(tiny):
    model, processor = tiny
    photos = {f"<c{i}>": random_image(100 + i) for i in range(6)}
    bank = model.encode_concepts(**processor.prepare_references({label: [photo] for label, photo in photos.items()}))
    assert bank.keys.shape == (6, model.config.vision_hidden_size)
    assert torch.allclose(bank.keys.float().norm(dim=-1), torch.ones(6), atol=1e-2)
    queries = [photos["<c4>"], [photos["<c1>"]]]  # one photo, or a list of photos, per sample
    retrieved, scores = model.retrieve_concepts(bank, top_k=2, return_scores=True,
                                                **processor.prepare_retrieval(queries))
    assert [labels[0] for labels in retrieved] == ["<c4>", "<c1>"] and scores.shape == (2, 2)
    # "who is here?" names nobody: the retrieved concepts enter the prompt, in bank order
    text = IMAGE_PLACEHOLDERS["llava"] + "Who is in this photo?"
    inputs = processor(text=[text, text], images=[[photos["<c4>"]], [photos["<c1>"]]], concepts=bank,
                       retrieved=retrieved)
    assert inputs["concept_names"] == sorted({label for labels in retrieved for label in labels}, key=bank.index)
    assert (inputs["prompt_concepts"] >= 0).sum(dim=1).tolist() == [2, 2]
    output = model.generate(**inputs, concepts=bank, max_new_tokens=2, do_sample=False)
    assert output.shape[0] == 2


def test_retrieval_errors_name_the_fix(tiny):
    model, processor = tiny
    bank = model.encode_concepts(**processor.prepare_references({"<a>": [random_image(1)]}))
    text = [IMAGE_PLACEHOLDERS["llava"] + "Who is here?"]
    with pytest.raises(ICPTInputError, match="does not hold"):
        processor(text=text, images=[[random_image(2)]], concepts=bank, retrieved=[["<zz>"]])
    with pytest.raises(ICPTInputError, match="pass the bank as concepts"):
        processor(text=text, images=[[random_image(2)]], retrieved=[["<a>"]])
    with pytest.raises(ICPTInputError, match="one list of labels per sample"):
        processor(text=text, images=[[random_image(2)]], concepts=bank, retrieved=[["<a>"], ["<a>"]])
    with pytest.raises(ICPTInputError, match="needs photos"):
        model.retrieve_concepts(bank, top_k=1)


def test_repeated_references_are_not_encoded_again(tiny):
    model, processor = tiny
    references = processor.prepare_references({"<a>": [random_image(7), random_image(8)]})
    REFERENCE_FEATURE_CACHE.clear()
    first = model.encode_concepts(**references)
    assert (REFERENCE_FEATURE_CACHE.hits, REFERENCE_FEATURE_CACHE.misses) == (0, 2)
    again = model.encode_concepts(**references)
    assert REFERENCE_FEATURE_CACHE.hits == 2 and torch.equal(first.prompts, again.prompts)
    with torch.no_grad():  # weights changed in place (training, load_state_dict): the cache must not answer
        next(model.vlm.model.vision_tower.parameters()).add_(0.5)
    changed = model.encode_concepts(**references)
    assert REFERENCE_FEATURE_CACHE.misses == 4 and not torch.equal(changed.prompts, first.prompts)
    # a training step (gradients recorded) draws new photos: it bypasses the cache
    from modeling_icpt.reference_features import reference_features

    pixels = {k[len("reference_"):]: v for k, v in references.items() if k == "reference_pixel_values"}
    with torch.enable_grad():
        reference_features(model.vlm, pixels, model.config.vision_layers)
    assert (REFERENCE_FEATURE_CACHE.hits, REFERENCE_FEATURE_CACHE.misses, len(REFERENCE_FEATURE_CACHE)) == (2, 4, 4)


def test_fixed_length_skips_the_complexity_and_batched_complexity_matches_the_loop(tiny_backbone_dirs):
    processor = ICPTProcessor.from_backbone(tiny_backbone_dirs["llava"], max_prompt_length=4)
    fixed = ICPTForConditionalGeneration.from_backbone(tiny_backbone_dirs["llava"],
                                                       **{**SETTINGS, "min_prompt_length": 4}).eval()
    bank = fixed.encode_concepts(**processor.prepare_references({"<a>": [random_image(3)], "<b>": [random_image(4)]}))
    assert bank.lengths == {"<a>": 4, "<b>": 4} and torch.isnan(bank.complexity).all()
    torch.manual_seed(0)
    features = [torch.randn(n, 12) @ torch.randn(12, 12) * scale for n, scale in ((20, 1.0), (7, 0.3), (30, 2.0))]
    features += [torch.ones(5, 12), torch.randn(1, 12)]  # flat and single-patch concepts have complexity 0
    patches = torch.zeros(len(features), 30, 12)
    mask = torch.zeros(len(features), 30, dtype=torch.bool)
    for i, f in enumerate(features):
        patches[i, : len(f)], mask[i, : len(f)] = f, True
    expected = torch.stack([concept_complexity(f) for f in features])
    assert torch.allclose(batched_complexity(patches, mask), expected, atol=1e-5)


def test_bulk_encoding_in_batches_equals_one_pass(tiny):
    from modeling_icpt import ConceptBank

    model, processor = tiny
    references = {f"<c{i}>": [random_image(200 + i)] for i in range(5)}
    REFERENCE_FEATURE_CACHE.clear()
    in_batches = ConceptBank.encode(model, processor, references, batch_size=2)
    at_once = model.encode_concepts(**processor.prepare_references(references))
    assert in_batches.labels == at_once.labels and in_batches.lengths == at_once.lengths
    assert torch.allclose(in_batches.prompts, at_once.prompts, atol=1e-5)
    assert torch.allclose(in_batches.keys.float(), at_once.keys.float(), atol=1e-3)


def test_icpt_ask_lets_retrieval_choose_the_concepts(tmp_path, capsys):
    from icpt.commands.cli import main
    from icpt.inference import DEFAULT_MODEL, load_model

    model, processor = load_model(), ICPTProcessor.from_pretrained(DEFAULT_MODEL)
    photos = {f"<p{i}>": random_image(300 + i, size=(64, 64)) for i in range(4)}
    model.encode_concepts(**processor.prepare_references({k: [v] for k, v in photos.items()})).save(tmp_path / "b.safetensors")
    photos["<p2>"].save(tmp_path / "query.png")
    assert main(["ask", str(tmp_path / "query.png"), "Who is in this photo?", "--bank", str(tmp_path / "b.safetensors"),
                 "--retrieve", "2", "--max-new-tokens", "2"]) == 0
    assert "Retrieved: <p2> (1.00)" in capsys.readouterr().err
    assert main(["ask", str(tmp_path / "query.png"), "Who is in this photo?", "--retrieve", "2"]) != 0
    assert "--retrieve K needs --bank" in capsys.readouterr().err


def test_the_retrieval_row_adds_what_retrieval_finds_to_the_named_concepts(tiny):
    import io

    from icpt.evaluation.methods import BackboneContext, EvalConcept, EvalEpisode, ICPTRetrievalMethod

    model, processor = tiny

    def value(image):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return {"path": None, "bytes": buffer.getvalue()}

    photos = [random_image(400 + i) for i in range(4)]
    concepts = [EvalConcept(f"<w{i}>", f"key{i}", [value(photos[i])], f"identity {i}") for i in range(4)]
    # another episode's instance of identity 2 (its own label and references): the collection holds it once
    again = EvalConcept("<w9>", "key9", [value(random_image(409))], "identity 2")
    common = dict(answer="yes", task="recognition", target="yes", options=[], tags=[])
    asks_about_one = EvalEpisode([concepts[0], concepts[2]], value(photos[2]), "Is <w2> in this photo?",
                                 present=["<w2>"], **common)
    text_only = EvalEpisode([concepts[1]], None, "What colour is <w1>?", present=[], **common)
    method = ICPTRetrievalMethod(BackboneContext(model.vlm, processor, model), model, top_k=1)
    method.set_concept_pool([asks_about_one, text_only,
                             EvalEpisode([concepts[3], again], None, "<w3>?", present=[], **common)])
    assert [c.key for c in method.concept_pool] == ["key0", "key2", "key1", "key3"]
    assert isinstance(method.answer(asks_about_one), str) and isinstance(method.answer(text_only), str)
    assert method.retrieval_hits == [True]  # the photo of <w2> ranks identity 2 among the first top_k + 1
    # <w2>'s rows and the one retrieved concept's rows fill the prompt; the text-only question has only its own
    own = method.prompt_tokens["key2"]
    assert own < method.question_tokens(asks_about_one) <= own + model.config.max_prompt_length
    assert method.question_tokens(text_only) == method.prompt_tokens["key1"]
