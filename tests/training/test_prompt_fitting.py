"""Rows fitted per concept (icpt/training/prompt_fitting.py): Yo'LLaVA's test-time training."""

import numpy as np
import pytest
import torch

from helpers.evaluation import TINY
from helpers.images import random_image
from icpt.training import prompt_fitting
from icpt.training.prompt_fitting import initial_concept_rows, train_concept_prompts
from icpt.training.trainer import episode_messages
from icpt.world.tasks import RECOGNITION_QUESTION
from modeling_icpt import ConceptBank, ICPTForConditionalGeneration
from processing_icpt import ICPTProcessor


def test_test_time_training_updates_only_its_rows_and_lowers_its_loss(tiny_llava):
    processor = ICPTProcessor.from_backbone(tiny_llava, max_prompt_length=4)
    torch.manual_seed(0)
    model = ICPTForConditionalGeneration.from_backbone(tiny_llava, prompt_token_id=processor.prompt_token_id, **TINY)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    positives, negatives = [random_image(i) for i in range(3)], [random_image(20 + i) for i in range(3)]
    bank, losses = train_concept_prompts(model, processor, "<bo>", positives, negatives, steps=8, seed=3)

    assert bank.labels == ["<bo>"] and bank.lengths == {"<bo>": 16}
    assert losses[-1] < losses[0] - 0.01, losses
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), f"{name} changed"
    assert all(p.grad is None for p in model.parameters())
    initial = initial_concept_rows(model, 16, seed=3)
    assert not torch.allclose(bank.prompts, initial)
    assert (bank.prompts - initial).abs().amax(dim=-1).gt(0).all(), "every row should move"
    with pytest.raises(ValueError, match="positive"):
        train_concept_prompts(model, processor, "<bo>", [], negatives)


def test_test_time_training_with_relabel_asks_under_a_new_label_each_step(tiny_llava, monkeypatch):
    processor = ICPTProcessor.from_backbone(tiny_llava, max_prompt_length=4)
    torch.manual_seed(0)
    model = ICPTForConditionalGeneration.from_backbone(tiny_llava, prompt_token_id=processor.prompt_token_id, **TINY)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    positives, negatives = [random_image(i) for i in range(2)], [random_image(20 + i) for i in range(2)]
    asked = []  # (the preamble's labels, the asked label, the concept's rows) of every step
    batch_of = prompt_fitting.recognition_batch

    def recording_batch(processor, bank, label, positives, negatives):
        asked.append((list(bank.labels), label, bank.prompts[0].detach().clone()))
        return batch_of(processor, bank, label, positives, negatives)

    monkeypatch.setattr(prompt_fitting, "recognition_batch", recording_batch)
    bank, losses = train_concept_prompts(model, processor, "<bo>", positives, negatives, num_rows=4, steps=6, seed=3,
                                         relabel=np.random.default_rng(0))

    assert len(asked) == 6 and len(losses) == 6
    assert bank.labels == ["<bo>"] and bank.lengths == {"<bo>": 4}
    assert all(labels == [label] and label.startswith("<w") for labels, label, _ in asked)
    assert len({label for _, label, _ in asked}) == 6, "a new label every step"
    # the asked concept's rows are the ones being trained: they start at the initialization and move
    assert torch.equal(asked[0][2], initial_concept_rows(model, 4, seed=3)[0])
    assert not torch.equal(asked[-1][2], asked[0][2]) and not torch.equal(bank.prompts[0], asked[0][2])
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), f"{name} changed"
    again, _ = train_concept_prompts(model, processor, "<bo>", positives, negatives, num_rows=4, steps=6, seed=3,
                                     relabel=np.random.default_rng(0))
    assert torch.equal(again.prompts, bank.prompts), "the generator fixes the labels"


def test_recognition_batch_trains_on_the_answers_only(tiny_llava):
    processor = ICPTProcessor.from_backbone(tiny_llava, max_prompt_length=4)
    model = ICPTForConditionalGeneration.from_backbone(tiny_llava, prompt_token_id=processor.prompt_token_id, **TINY)
    rows = initial_concept_rows(model, 4)
    bank = ConceptBank(["<bo>"], rows, torch.tensor([4]), torch.zeros(1), rows.mean(1),
                       model.config.base_model_name_or_path, model.backbone_fingerprint)
    positives, negatives = [random_image(i, size=(40 + 8 * i, 36)) for i in range(2)], [random_image(20)]
    batch = prompt_fitting.recognition_batch(processor, bank, "<bo>", positives, negatives)
    for index, answer in enumerate(["Yes", "Yes", "No"]):
        target = batch["labels"][index][batch["labels"][index] != -100]
        assert processor.tokenizer.decode(target, skip_special_tokens=True).strip() == answer
        # everything up to the end of this image's own prompt is context, nothing after it
        image = (positives + negatives)[index]
        prompt = processor(messages=[episode_messages({"image": image, "question": RECOGNITION_QUESTION.format(name="<bo>")},
                                                      with_answer=False)],
                           images=[[image]], concepts=bank, add_generation_prompt=True)["input_ids"][0]
        assert int((batch["labels"][index] != -100).nonzero()[0]) == len(prompt)
