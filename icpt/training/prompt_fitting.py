"""Prompt rows fitted to one concept with everything else frozen: Yo'LLaVA's test-time training.

The evaluation's `test_time_training` baseline fits 16 rows per concept this way (`icpt.evaluation.methods`), and the
identity targets of training are rows fitted this way per training identity (`icpt.training.identity_targets`).

Example:

```python
>>> from icpt.training.prompt_fitting import train_concept_prompts
>>> bank, losses = train_concept_prompts(model, processor, "<bo>", positives=[bo_1, bo_2], negatives=[other_1],
...                                      steps=30)  # doctest: +SKIP
>>> bank.lengths, losses[-1] < losses[0]  # doctest: +SKIP
({'<bo>': 16}, True)
```
"""

from __future__ import annotations

import numpy as np
import torch

from icpt.world.tasks import RECOGNITION_QUESTION, concept_labels
from modeling_icpt import ConceptBank

from .trainer import episode_messages

# Yo'LLaVA learns 16 soft tokens per concept (after the concept's own token); the budget is ours.
TEST_TIME_TRAINING_ROWS = 16
TEST_TIME_TRAINING_STEPS = 30
TEST_TIME_TRAINING_LEARNING_RATE = 0.05  # relative to the size of one embedding entry, see train_concept_prompts


def recognition_batch(processor, bank: ConceptBank, label: str, positives: list, negatives: list):
    """Training inputs of the Yo'LLaVA recognition task for one concept, with labels on the answers only.

    Each positive photo is asked "Can you see <label> in this photo? ..." with the answer "Yes", each
    negative with "No"; the concept's slots come from `bank`.
    """
    question = RECOGNITION_QUESTION.format(name=label)
    images = list(positives) + list(negatives)
    answers = ["Yes"] * len(positives) + ["No"] * len(negatives)
    conversations = [
        episode_messages({"image": image, "question": question, "answer": answer}, with_answer=True)
        for image, answer in zip(images, answers)
    ]
    batch = processor(
        messages=conversations, images=[[image] for image in images], concepts=bank,
        add_generation_prompt=False, padding_side="right",
    )
    labels = batch["input_ids"].clone()
    labels[batch["attention_mask"] == 0] = -100
    # the question, the image and the slots are context, not target: each prompt's length, from one batched call
    prompts = processor(
        messages=[episode_messages({"image": image, "question": question}, with_answer=False) for image in images],
        images=[[image] for image in images], concepts=bank, add_generation_prompt=True, padding_side="right",
    )
    for index, length in enumerate(prompts["attention_mask"].sum(1).tolist()):
        labels[index, :length] = -100
    batch["labels"] = labels
    return batch


def initial_concept_rows(model, num_rows: int = TEST_TIME_TRAINING_ROWS, seed: int = 0) -> torch.Tensor:
    """`(1, num_rows, d_lm)` random rows with the typical norm of the backbone's token embeddings (from `seed`)."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randn(1, num_rows, model.config.text_hidden_size, generator=generator)
    return rows / rows.norm(dim=-1, keepdim=True) * model.config.prompt_norm


def train_concept_prompts(
    model,
    processor,
    label: str,
    positives: list,
    negatives: list,
    num_rows: int = TEST_TIME_TRAINING_ROWS,
    steps: int = TEST_TIME_TRAINING_STEPS,
    learning_rate: float = TEST_TIME_TRAINING_LEARNING_RATE,
    seed: int = 0,
    relabel: np.random.Generator | None = None,
) -> tuple[ConceptBank, list[float]]:
    """Test-time training of one concept's soft prompt, as Yo'LLaVA does it, with everything else frozen.

    The concept gets `num_rows` free rows after its label (the processor writes "<bo> is <icpt>x16."),
    initialized at random (from `seed`) with the typical norm of the backbone's token embeddings, and
    trained with Adam for `steps` full-batch steps on recognition questions: its reference photos
    (`positives`, answer "Yes") and photos of other concepts (`negatives`, answer "No"). The loss is the
    backbone's LM loss on the answer tokens, computed through `model(**inputs, concepts=bank, labels=...)`:
    only the bank's rows receive gradients; the backbone and the projector stay as they are.

    Args:
        model: an `ICPTForConditionalGeneration` (its projector is unused; its hooks inject the rows).
        processor: the matching `ICPTProcessor`.
        label: the concept's label, e.g. `"<bo>"`.
        positives, negatives: PIL images.
        num_rows: soft tokens per concept (16 in Yo'LLaVA).
        steps: full-batch Adam steps.
        learning_rate: Adam's step relative to the typical size of one embedding entry
            (`prompt_norm / sqrt(d_lm)`), so one value suits backbones of any width (0.05 is about 1e-2 on
            the embedded default, whose embedding rows have norms near 3 in 256 dimensions).
        seed: fixes the rows' initialization.
        relabel: when given, every step asks about the concept under a new label of the episodes' kind,
            drawn from this generator: rows fitted under one fixed label are read much worse under any
            other (docs/default_model.md). `label` then only names the returned bank's concept. The
            identity targets are fitted this way.

    Returns:
        The trained `ConceptBank` (one concept, `num_rows` long) and the training loss before each step.

    Example:

    ```python
    >>> bank, losses = train_concept_prompts(model, processor, "<bo>", [bo_1, bo_2], [mia_1, kiki_1])  # doctest: +SKIP
    >>> answer = model.generate(**processor(messages=..., images=..., concepts=bank), concepts=bank)  # doctest: +SKIP
    ```
    """
    if not positives:
        raise ValueError(f"Test-time training of {label} needs at least one positive (reference) photo.")
    if steps < 1 or num_rows < 1:
        raise ValueError(f"Test-time training needs steps >= 1 and num_rows >= 1, got steps={steps}, num_rows={num_rows}.")
    device = model.vlm.get_input_embeddings().weight.device
    prompts = torch.nn.Parameter(initial_concept_rows(model, num_rows, seed).to(device))
    bank = ConceptBank([label], prompts, torch.tensor([num_rows]), torch.zeros(1), prompts.detach().mean(1),
                       model.config.base_model_name_or_path, model.backbone_fingerprint)
    if relabel is None:
        batch = recognition_batch(processor, bank, label, positives, negatives).to(device)
    entry_size = model.config.prompt_norm / model.config.text_hidden_size**0.5
    optimizer = torch.optim.Adam([prompts], lr=learning_rate * entry_size)
    losses = []
    with torch.enable_grad():
        for _ in range(steps):
            if relabel is not None:
                bank, batch = _relabelled_batch(model, processor, prompts, positives, negatives, relabel)
                batch = batch.to(device)
            optimizer.zero_grad()
            loss = model(**batch, concepts=bank).loss
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    trained = prompts.detach().clone()
    return ConceptBank([label], trained, torch.tensor([num_rows]), torch.zeros(1), trained.mean(1),
                       model.config.base_model_name_or_path, model.backbone_fingerprint), losses


def _relabelled_batch(model, processor, prompts, positives, negatives, rng: np.random.Generator):
    """The recognition batch of `prompts` (1, L, d) under a new random label of the episodes' kind."""
    label = concept_labels(rng, 1)[0]
    bank = ConceptBank([label], prompts, torch.tensor([prompts.shape[1]]), torch.zeros(1), prompts.detach().mean(1),
                       model.config.base_model_name_or_path, model.backbone_fingerprint)
    return bank, recognition_batch(processor, bank, label, positives, negatives)
