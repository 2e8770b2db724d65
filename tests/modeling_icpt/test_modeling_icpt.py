"""ICPTForConditionalGeneration on a tiny random backbone of every supported family."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from helpers.remote_code import without_project_paths
from helpers.tiny_backbones import FAMILIES, IMAGE_PLACEHOLDERS
from helpers.training import random_reader_adapter
from modeling_icpt import ConceptBank, ICPTConfig, ICPTForConditionalGeneration
from processing_icpt import ICPTProcessor

REPO = Path(__file__).resolve().parents[2]


class ICPTModelTester:
    """Builds a tiny ICPT model + processor around a tiny backbone, and inputs for them."""

    def __init__(self, family, backbone_dir, images):
        torch.manual_seed(0)
        self.family, self.images = family, images
        self.processor = ICPTProcessor.from_backbone(backbone_dir, max_prompt_length=4)
        self.model = ICPTForConditionalGeneration.from_backbone(
            backbone_dir, max_prompt_length=4, min_prompt_length=2, projector_hidden_size=32,
            projector_heads=2, projector_layers=1,
        )
        self.references = {"<bo>": images[:2], "<kiki>": images[2:3]}
        self.text = f"{IMAGE_PLACEHOLDERS[family]}Is <bo> next to <kiki>?"

    def bank(self):
        return self.model.encode_concepts(**self.processor.prepare_references(self.references))

    def query(self, **concepts):
        return self.processor(text=[self.text], images=[[self.images[4]]], **concepts)

    def language_model_inputs(self, inputs, **kwargs):
        """The input embeddings the LM itself receives (after image scatter and prompt injection)."""
        seen = {}

        def capture(module, args, kwargs_):
            seen["embeds"] = kwargs_["inputs_embeds"].detach().clone()

        handle = self.model.vlm.get_decoder().register_forward_pre_hook(capture, with_kwargs=True)
        try:
            self.model(**inputs, **kwargs)
        finally:
            handle.remove()
        return seen["embeds"]


@pytest.fixture(params=FAMILIES)
def tester(request, tiny_backbone_dirs, images):
    return ICPTModelTester(request.param, tiny_backbone_dirs[request.param], images)


def test_forward_loss_and_gradients_reach_only_the_projector(tester):
    inputs = tester.query(references=tester.references)
    labels = inputs["input_ids"].clone()
    labels[labels == tester.processor.prompt_token_id] = -100
    output = tester.model(**inputs, labels=labels)
    assert torch.isfinite(output.loss)
    output.loss.backward()
    with_grad = {name for name, p in tester.model.named_parameters() if p.grad is not None}
    assert with_grad, "no parameter received a gradient"
    assert all(name.startswith("projector.") for name in with_grad)
    assert any(p.grad.abs().sum() > 0 for p in tester.model.projector.parameters() if p.grad is not None)
    assert not any(p.requires_grad for p in tester.model.vlm.parameters())


def test_prompt_slots_carry_exactly_the_projector_rows(tester):
    bank = tester.bank()
    inputs = tester.query(concepts=bank)
    embeds = tester.language_model_inputs(inputs, concepts=bank)
    slots = inputs["input_ids"][0] == tester.processor.prompt_token_id
    expected = torch.cat([bank.rows("<bo>"), bank.rows("<kiki>")])
    assert int(slots.sum()) == sum(bank.lengths.values())
    torch.testing.assert_close(embeds[0, slots], expected.to(embeds.dtype))
    # and nowhere else: the other positions are the backbone's own embeddings
    plain = tester.language_model_inputs(tester.processor(text=[tester.text.replace("<bo>", "it").replace("<kiki>", "it")],
                                                          images=[[tester.images[4]]]))
    assert plain.shape[1] < embeds.shape[1]


def test_generate_with_two_concepts(tester):
    bank = tester.bank()
    inputs = tester.query(concepts=bank)
    out = tester.model.generate(**inputs, concepts=bank, max_new_tokens=5, do_sample=False)
    assert out.shape[0] == 1 and out.shape[1] > inputs["input_ids"].shape[1]
    # the same concepts given as raw references are encoded inside generate() to the same rows
    raw = tester.query(references=tester.references, prompt_lengths=bank.lengths)
    out_raw = tester.model.generate(**raw, max_new_tokens=5, do_sample=False)
    assert torch.equal(out, out_raw)


def test_without_concepts_generate_equals_the_backbone(tester):
    text = f"{IMAGE_PLACEHOLDERS[tester.family]}What is in this photo?"
    inputs = tester.processor(text=[text], images=[[tester.images[5]]])
    ours = tester.model.generate(**inputs, max_new_tokens=6, do_sample=False)
    backbone_inputs = {k: v for k, v in inputs.items() if k not in ("prompt_concepts", "concept_names")}
    theirs = tester.model.vlm.generate(**backbone_inputs, max_new_tokens=6, do_sample=False)
    assert torch.equal(ours, theirs)


def test_save_and_load_give_identical_generations(tester, tmp_path):
    bank = tester.bank()
    inputs = tester.query(concepts=bank)
    before = tester.model.generate(**inputs, concepts=bank, max_new_tokens=5, do_sample=False)
    tester.model.save_pretrained(tmp_path / "ckpt")
    saved = {p.name for p in (tmp_path / "ckpt").iterdir()}
    assert {"config.json", "model.safetensors"} <= saved
    from safetensors import safe_open

    with safe_open(str(tmp_path / "ckpt" / "model.safetensors"), "pt") as f:
        assert all(key.startswith("projector.") for key in f.keys())
    loaded = ICPTForConditionalGeneration.from_pretrained(tmp_path / "ckpt")
    loaded_bank = loaded.encode_concepts(**tester.processor.prepare_references(tester.references))
    after = loaded.generate(**inputs, concepts=loaded_bank, max_new_tokens=5, do_sample=False)
    assert torch.equal(before, after)
    bank.save(tmp_path / "bank.safetensors")
    reloaded = ConceptBank.load(tmp_path / "bank.safetensors")
    assert torch.equal(loaded.generate(**inputs, concepts=reloaded, max_new_tokens=5, do_sample=False), before)


def test_projector_is_a_small_fraction_of_the_backbone(tiny_backbone_dirs):
    # tiny test backbones are narrower than the projector's default width: measure at the real proportions
    model = ICPTForConditionalGeneration.from_backbone(tiny_backbone_dirs["llava"])
    projector = sum(p.numel() for p in model.projector.parameters())
    assert projector > 0
    config = ICPTConfig(text_hidden_size=4096, vision_hidden_size=1024, vision_layers=[12, -1])
    from modeling_icpt.concept_projector import ConceptProjector

    llava_7b = 7.06e9
    assert sum(p.numel() for p in ConceptProjector(config).parameters()) < 0.02 * llava_7b


# ---------------------------------------------------------------- bad input


@pytest.fixture
def llava(tiny_backbone_dirs, images):
    return ICPTModelTester("llava", tiny_backbone_dirs["llava"], images)


def test_bank_for_another_width_is_refused(llava):
    bank = llava.bank()
    wrong = ConceptBank(bank.labels, torch.zeros(2, 4, 7), bank._lengths, bank.complexity, torch.zeros(2, 7))
    inputs = llava.query(concepts=wrong)
    with pytest.raises(ValueError, match="made for another backbone"):
        llava.model.generate(**inputs, concepts=wrong, max_new_tokens=2)


def test_slots_without_concepts_are_refused(llava):
    inputs = llava.query(concepts=llava.bank())
    with pytest.raises(ValueError, match="no concepts were given"):
        llava.model.generate(**inputs, max_new_tokens=2)


def test_inputs_name_their_concepts_and_other_banks_are_refused(llava):
    bank = llava.bank()
    inputs = llava.query(concepts=bank)
    assert inputs["concept_names"] == ["<bo>", "<kiki>"]
    expected = llava.model.generate(**inputs, concepts=bank, max_new_tokens=4, do_sample=False)
    # the same concepts in another order: each slot still gets its own concept's rows
    reordered = bank.select(["<kiki>", "<bo>"])
    assert torch.equal(llava.model.generate(**inputs, concepts=reordered, max_new_tokens=4, do_sample=False), expected)
    with pytest.raises(ValueError, match="does not hold"):
        llava.model.generate(**inputs, concepts=bank.select(["<kiki>"]), max_new_tokens=2)
    # a bank with the same labels whose lengths differ was not the one the inputs were built with
    other = ConceptBank(bank.labels, bank.prompts, torch.tensor([1, 1]), bank.complexity, bank.descriptors,
                        bank.base_model_name_or_path, bank.backbone_fingerprint)
    with pytest.raises(ValueError, match="built with another bank"):
        llava.model.generate(**inputs, concepts=other, max_new_tokens=2)
    unnamed = {k: v for k, v in inputs.items() if k != "concept_names"}
    with pytest.raises(ValueError, match="no concept_names"):
        llava.model.generate(**unnamed, concepts=bank, max_new_tokens=2)


def test_a_question_gets_only_the_concepts_it_names(llava):
    bank = llava.bank()
    text = IMAGE_PLACEHOLDERS["llava"] + "Is <kiki> here?"
    inputs = llava.processor(text=[text], images=[[llava.images[4]]], concepts=bank)
    assert inputs["concept_names"] == ["<kiki>"]
    assert int((inputs["input_ids"] == llava.processor.prompt_token_id).sum()) == bank.lengths["<kiki>"]
    embeds = llava.language_model_inputs(inputs, concepts=bank)
    slots = inputs["input_ids"][0] == llava.processor.prompt_token_id
    torch.testing.assert_close(embeds[0, slots], bank.rows("<kiki>"))


def test_concurrent_generate_calls_give_the_single_threaded_answers(tiny_backbone_dirs, images):
    from concurrent.futures import ThreadPoolExecutor

    tester = ICPTModelTester("llava", tiny_backbone_dirs["llava"], images)
    # eight concepts, each from different photos; each thread asks about its own
    bank = tester.model.encode_concepts(**tester.processor.prepare_references(
        {f"<c{i}>": [images[i % 6], images[(i + 1) % 6]] if i % 2 else [images[i % 6]] for i in range(8)}))
    banks = [bank.select([f"<c{i}>"]) for i in range(8)]

    def ask(i):
        inputs = tester.processor(text=[f"{IMAGE_PLACEHOLDERS['llava']}Is <c{i}> here?"], images=[[images[5]]],
                                  concepts=banks[i])
        rows = tester.model(**inputs, concepts=banks[i]).logits[0, -1]
        out = tester.model.generate(**inputs, concepts=banks[i], max_new_tokens=6, do_sample=False)
        return rows, out

    alone = [ask(i) for i in range(8)]
    assert len({tuple(out[0].tolist()) for _, out in alone}) > 1  # the concepts do change the answers
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(3):
            together = list(pool.map(ask, range(8)))
            for (rows, out), (rows_alone, out_alone) in zip(together, alone):
                assert torch.equal(out, out_alone)
                torch.testing.assert_close(rows, rows_alone)


def test_labels_may_cover_the_prompt_slots(llava):
    bank = llava.bank()
    inputs = llava.query(concepts=bank)
    # the slot id lies outside the LM's vocabulary: a slot is never a target, whatever labels say
    assert llava.processor.prompt_token_id >= llava.model.vlm.config.text_config.vocab_size
    output = llava.model(**inputs, concepts=bank, labels=inputs["input_ids"])
    masked = inputs["input_ids"].masked_fill(inputs["input_ids"] == llava.processor.prompt_token_id, -100)
    assert torch.isfinite(output.loss)
    torch.testing.assert_close(output.loss, llava.model(**inputs, concepts=bank, labels=masked).loss)


def test_a_prompt_longer_than_the_backbone_reads_is_refused(llava):
    limit = llava.model.vlm.config.text_config.max_position_embeddings
    text = IMAGE_PLACEHOLDERS["llava"] + "Is <bo> here? " + "very " * limit
    inputs = llava.processor(text=[text], images=[[llava.images[4]]], concepts=llava.bank())
    with pytest.raises(ValueError, match=f"reads at most {limit} positions"):
        llava.model.generate(**inputs, concepts=llava.bank(), max_new_tokens=2)
    short = llava.query(concepts=llava.bank())
    with pytest.raises(ValueError, match="plus 100000 new tokens"):
        llava.model.generate(**short, concepts=llava.bank(), max_new_tokens=100000)


def test_the_projector_follows_the_backbone_dtype(llava, tmp_path):
    llava.model.save_pretrained(tmp_path / "ckpt")
    loaded = ICPTForConditionalGeneration.from_pretrained(tmp_path / "ckpt", dtype=torch.bfloat16)
    assert loaded.vlm.dtype == torch.bfloat16
    assert {p.dtype for p in loaded.projector.parameters()} == {torch.bfloat16}
    bank = loaded.encode_concepts(**llava.processor.prepare_references(llava.references))
    out = loaded.generate(**llava.query(concepts=bank), concepts=bank, max_new_tokens=3, do_sample=False)
    assert out.shape[0] == 1


def test_private_loader_keywords_never_reach_the_backbone(llava, tmp_path, monkeypatch):
    from transformers import AutoModelForImageTextToText

    llava.model.save_pretrained(tmp_path / "ckpt")
    seen = {}
    original = AutoModelForImageTextToText.from_pretrained

    def spy(name, *args, **kwargs):
        seen.update(kwargs)
        return original(name, *args, **kwargs)

    monkeypatch.setattr(AutoModelForImageTextToText, "from_pretrained", spy)
    ICPTForConditionalGeneration.from_pretrained(tmp_path / "ckpt", _from_auto=True, _from_pipeline="x",
                                                 adapter_kwargs={}, trust_remote_code=True, revision="abc123",
                                                 attn_implementation="eager")
    assert seen == {"attn_implementation": "eager"}


def test_a_reader_adapter_never_goes_into_a_shared_backbone(llava, tmp_path):
    from transformers import AutoModelForImageTextToText

    llava.model.save_pretrained(tmp_path / "frozen")
    llava.model.add_reader_adapter(rank=2)
    llava.model.save_pretrained(tmp_path / "adapted")
    shared = AutoModelForImageTextToText.from_pretrained(llava.model.config.base_model_name_or_path)
    ICPTForConditionalGeneration.from_pretrained(tmp_path / "frozen", backbone=shared)
    with pytest.raises(ValueError, match="shared with another ICPT model"):
        ICPTForConditionalGeneration.from_pretrained(tmp_path / "adapted", backbone=shared)
    other = AutoModelForImageTextToText.from_pretrained(llava.model.config.base_model_name_or_path)
    ICPTForConditionalGeneration.from_pretrained(tmp_path / "adapted", backbone=other)
    with pytest.raises(ValueError, match="carries another ICPT model's reader adapter"):
        ICPTForConditionalGeneration.from_pretrained(tmp_path / "frozen", backbone=other)


def _adapter_layers(model):
    from peft.tuners.lora import LoraLayer

    return [m for m in model.vlm.get_decoder().modules() if isinstance(m, LoraLayer)]


def test_the_reader_adapter_reads_folded_in_eval_mode_and_learns_apart_in_train_mode(llava):
    model = llava.model
    model.add_reader_adapter(rank=4)
    random_reader_adapter(model, seed=1)
    backbone = {name: p.detach().clone() for name, p in model.vlm.named_parameters() if ".lora_" not in name}
    bank = llava.bank()
    inputs = llava.query(concepts=bank)
    layers = _adapter_layers(model)
    assert len(layers) > 0 and not any(layer.merged for layer in layers)  # a fresh model is in train mode

    model.eval()
    assert all(layer.merged for layer in layers)
    with torch.no_grad():
        folded = model(**inputs, concepts=bank).logits
        for layer in layers:  # the same weights read apart, as PEFT reads an unmerged adapter
            layer.unmerge()
        apart = model(**inputs, concepts=bank).logits
        for layer in layers:
            layer.merge()
    folded_weights = dict(model.vlm.named_parameters())
    assert any(not torch.equal(folded_weights[name], weight) for name, weight in backbone.items())  # it is in them
    torch.testing.assert_close(folded, apart, rtol=1e-4, atol=1e-5)

    model.train()
    assert not any(layer.merged for layer in layers)
    for name, parameter in model.vlm.named_parameters():  # the backbone's weights are back, to rounding
        if name in backbone:
            torch.testing.assert_close(parameter, backbone[name], rtol=0, atol=1e-6)
    labels = inputs["input_ids"].clone()
    labels[labels == llava.processor.prompt_token_id] = -100
    model(**inputs, concepts=bank, labels=labels).loss.backward()
    adapter_grads = [p.grad for name, p in model.named_parameters() if ".lora_" in name]
    assert adapter_grads and all(g is not None and g.abs().sum() > 0 for g in adapter_grads)


def test_other_adapter_weights_loaded_into_a_folded_model_are_the_ones_it_reads(llava, tmp_path):
    model = llava.model
    model.add_reader_adapter(rank=4)
    random_reader_adapter(model, seed=1)
    model.save_pretrained(tmp_path / "first")
    backbone = {name: p.detach().clone() for name, p in model.vlm.named_parameters() if ".lora_" not in name}
    random_reader_adapter(model, seed=2)  # another adapter, folded in by eval()
    model.eval()
    bank = llava.bank()
    inputs = llava.query(concepts=bank)
    from safetensors.torch import load_file

    model.load_trained_state_dict(load_file(tmp_path / "first" / "model.safetensors"))
    assert all(layer.merged for layer in _adapter_layers(model))
    fresh = ICPTForConditionalGeneration.from_pretrained(tmp_path / "first")
    assert not fresh.training and all(layer.merged for layer in _adapter_layers(fresh))  # loaded for inference
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs, concepts=bank).logits, fresh(**inputs, concepts=bank).logits,
                                   rtol=1e-4, atol=1e-5)
    model.train()
    for name, parameter in model.vlm.named_parameters():
        if name in backbone:
            torch.testing.assert_close(parameter, backbone[name], rtol=0, atol=1e-6)


def test_checkpoint_with_missing_keys_is_refused(llava, tmp_path):
    llava.model.save_pretrained(tmp_path / "ckpt")
    from safetensors.torch import load_file, save_file

    weights = load_file(tmp_path / "ckpt" / "model.safetensors")
    weights.pop(next(iter(weights)))
    save_file(weights, tmp_path / "ckpt" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="missing keys"):
        ICPTForConditionalGeneration.from_pretrained(tmp_path / "ckpt")


def test_backbone_of_another_width_is_refused(llava, tmp_path, tiny_backbone_dirs):
    llava.model.save_pretrained(tmp_path / "ckpt")
    config = ICPTConfig.from_pretrained(tmp_path / "ckpt")
    config.text_hidden_size += 8
    config.save_pretrained(tmp_path / "ckpt")
    with pytest.raises(ValueError, match="trained for a backbone"):
        ICPTForConditionalGeneration.from_pretrained(tmp_path / "ckpt")


def test_unsupported_backbone_names_the_supported_families():
    from transformers import LlamaConfig, LlamaForCausalLM

    llm = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                       num_attention_heads=2, num_key_value_heads=1))
    with pytest.raises(ValueError, match="llava"):
        ICPTForConditionalGeneration.from_backbone(llm, prompt_token_id=63)


# ---------------------------------------------------------------- remote code


def test_checkpoint_loads_as_remote_code_in_a_separate_process(llava, tmp_path):
    """AutoModel, AutoModelForImageTextToText, AutoProcessor and a pipeline, where the package is not importable:
    a checkpoint with a reader adapter and a concept bank loads and answers as the installed package does."""
    ckpt = tmp_path / "ckpt"
    llava.model.add_reader_adapter(rank=4)
    random_reader_adapter(llava.model, seed=0)
    bank = llava.bank()
    llava.model.save_pretrained(ckpt, concepts=bank)  # a personalized checkpoint: projector, adapter, concepts
    llava.processor.save_pretrained(ckpt)
    inputs = llava.query(concepts=bank)
    expected = llava.model.generate(**inputs, concepts=bank, max_new_tokens=5, do_sample=False)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is <bo> here?"}]}]
    chat = llava.processor(messages=messages, images=[[llava.images[4]]], concepts=bank)
    answer = llava.model.generate(**chat, concepts=bank, max_new_tokens=5, do_sample=False)
    expected_text = llava.processor.decode(answer[0, chat["input_ids"].shape[1]:], skip_special_tokens=True)
    torch.save({"expected": expected}, tmp_path / "expected.pt")
    for i, image in enumerate(llava.images[:5]):
        image.save(tmp_path / f"{i}.png")
    script = textwrap.dedent(f"""
        import sys, torch
        from PIL import Image
        assert not any(p.endswith("{REPO.name}") for p in sys.path if p), sys.path
        for name in ("modeling_icpt", "processing_icpt", "icpt"):
            try:
                __import__(name)
            except ImportError:
                pass
            else:
                raise SystemExit(f"{{name}} must not be importable here")
        from transformers import AutoModel, AutoModelForImageTextToText, AutoProcessor, pipeline
        path = r"{ckpt}"
        expected = torch.load(r"{tmp_path}/expected.pt")["expected"]
        img = [Image.open(r"{tmp_path}/%d.png" % i).convert("RGB") for i in range(5)]
        processor = AutoProcessor.from_pretrained(path, trust_remote_code=True)
        assert type(processor).__name__ == "ICPTProcessor", type(processor)
        for auto in (AutoModelForImageTextToText, AutoModel):
            model = auto.from_pretrained(path, trust_remote_code=True)
            assert type(model).__name__ == "ICPTForConditionalGeneration", (auto, type(model))
            bank = model.encode_concepts(**processor.prepare_references({{"<bo>": img[:2], "<kiki>": img[2:3]}}))
            inputs = processor(text=[{llava.text!r}], images=[[img[4]]], concepts=bank)
            out = model.generate(**inputs, concepts=bank, max_new_tokens=5, do_sample=False)
            assert torch.equal(out, expected), (auto, out)
            # the checkpoint's own concepts: no bank argument anywhere
            inputs = processor(text=[{llava.text!r}], images=[[img[4]]])
            assert torch.equal(model.generate(**inputs, max_new_tokens=5, do_sample=False), expected)
        pipe = pipeline("image-text-to-text", model=path, trust_remote_code=True)
        chat = [{{"role": "user", "content": [{{"type": "image", "image": img[4]}}, {{"type": "text", "text": "Is <bo> here?"}}]}}]
        said = pipe(text=chat, max_new_tokens=5, return_full_text=False)[0]["generated_text"]
        assert said == {expected_text!r}, said
        print("REMOTE-OK")
    """)
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "PYTHONNOUSERSITE": "1", "OMP_NUM_THREADS": "1"}
    # -I: isolated mode, so neither the repository nor PYTHONPATH is on sys.path; the editable
    # install's path hook is removed by running from a copy of the interpreter's site without it
    result = subprocess.run([sys.executable, "-I", "-S", "-c", without_project_paths() + script],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert "REMOTE-OK" in result.stdout, result.stdout + result.stderr


# ---------------------------------------------------------------- a real language model inside


def test_real_language_model_keeps_its_text_through_icpt(smollm2_llava_path, images):
    processor = ICPTProcessor.from_backbone(smollm2_llava_path, max_prompt_length=4)
    model = ICPTForConditionalGeneration.from_backbone(smollm2_llava_path, max_prompt_length=4, projector_layers=1)
    question = [{"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]}]
    inputs = processor(messages=question)
    out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    answer = processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer, answer

    # two concepts from an untrained projector, through the real tokenizer and chat template
    bank = model.encode_concepts(**processor.prepare_references({"<bo>": images[:2], "<kiki>": images[2:4]}))
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is <bo> next to <kiki>?"}]}]
    inputs = processor(messages=messages, images=[[images[4]]], concepts=bank)
    rendered = processor.decode(inputs["input_ids"][0])
    assert "<bo> is <icpt>" in rendered and "<|im_start|>user" in rendered
    out = model.generate(**inputs, concepts=bank, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]
    assert processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def test_relative_backbone_path_is_read_from_the_checkpoint_folder(llava, tmp_path, monkeypatch):
    import json
    import shutil

    shutil.copytree(llava.model.config.base_model_name_or_path, tmp_path / "backbone")
    llava.model.config.base_model_name_or_path = "../backbone"
    llava.model.save_pretrained(tmp_path / "projector")
    loaded = ICPTForConditionalGeneration.from_pretrained(tmp_path / "projector")
    assert Path(loaded.vlm.config.name_or_path).resolve() == (tmp_path / "backbone").resolve()
    # re-saved elsewhere, it still names that backbone, relative to the new folder, from any working directory
    loaded.save_pretrained(tmp_path / "deeper" / "copy")
    saved = json.loads((tmp_path / "deeper" / "copy" / "config.json").read_text())["base_model_name_or_path"]
    assert saved == "../../backbone"
    shutil.copytree(tmp_path / "backbone", tmp_path / "a" / "backbone")
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a" / "b" / "c")  # here "../../backbone" is a copy: never read from the working directory
    again = ICPTForConditionalGeneration.from_pretrained(tmp_path / "deeper" / "copy")
    assert Path(again.vlm.config.name_or_path).resolve() == (tmp_path / "backbone").resolve()
    assert Path(again.vlm.config.name_or_path).resolve() != (tmp_path / "a" / "backbone").resolve()
    # loaded around a backbone object, re-saved: it names that backbone (a Trainer's checkpoints do this)
    from transformers import AutoModelForImageTextToText

    given = ICPTForConditionalGeneration.from_pretrained(
        tmp_path / "deeper" / "copy", backbone=AutoModelForImageTextToText.from_pretrained(tmp_path / "a" / "backbone"))
    given.save_pretrained(tmp_path / "resaved")
    assert json.loads((tmp_path / "resaved" / "config.json").read_text())["base_model_name_or_path"] == "../a/backbone"
    shutil.rmtree(tmp_path / "backbone")
    with pytest.raises(ValueError, match="no such folder"):
        ICPTForConditionalGeneration.from_pretrained(tmp_path / "deeper" / "copy")
