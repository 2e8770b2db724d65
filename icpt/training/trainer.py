"""Training pieces: the episode collator, a Trainer that logs each loss component, and the recognition metric
it reports at each evaluation step.

Example:

```python
>>> from icpt.training.trainer import EpisodeCollator, ICPTTrainer
>>> collator = EpisodeCollator(processor, min_prompt_length=2, max_prompt_length=8)  # doctest: +SKIP
>>> trainer = ICPTTrainer(model=model, args=args, train_dataset=episodes, data_collator=collator)  # doctest: +SKIP
>>> trainer.train()  # doctest: +SKIP
```
"""

import hashlib
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import Trainer

from icpt.metrics import load_metric
from icpt.metrics.recognition.recognition import read_yes_no
from modeling_icpt.input_checks import LABEL_PATTERN
from processing_icpt.processing_icpt import ConceptSlots


def episode_messages(episode: dict, with_answer: bool) -> list[dict]:
    """The chat turns of an episode: the user's (query image and question), then the answer."""
    content = ([{"type": "image"}] if episode.get("image") is not None else []) + [
        {"type": "text", "text": episode["question"]}
    ]
    messages = [{"role": "user", "content": content}]
    if with_answer:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": episode["answer"]}]})
    return messages


def asked_concepts(episode: dict) -> list[dict]:
    """
    The concepts of an episode that enter its prompt: those its question names, as the processor picks them
    from a bank at inference (all of them when the question names none, as a caption request may not).
    An episode without concepts (a generic question) has none.
    """
    named = set(LABEL_PATTERN.findall(episode["question"]))
    return [c for c in episode["concepts"] if c["name"] in named] or list(episode["concepts"])


def drawn_prompt_lengths(episode: dict, low: int, high: int, seed: int) -> dict[str, int]:
    """Nested truncation: each concept of an episode trains with a prompt length drawn in [low, high].

    The draw is a hash of the episode's content and the seed, not a stateful generator, so a
    resumed run sees exactly the lengths an uninterrupted run would have seen.
    """
    lengths = {}
    for concept in episode["concepts"]:
        key = f"{seed}|{concept['name']}|{episode['question']}|{episode['answer']}|{episode.get('target', '')}"
        digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
        lengths[concept["name"]] = low + digest % (high - low + 1)
    return lengths


class EpisodeCollator:
    """
    Turns episode rows (`icpt.episodes.EPISODE_FEATURES`) into a training batch via `ICPTProcessor`.

    Only the concepts the question names enter the prompt (`asked_concepts`), as at inference; episodes
    without concepts (generic questions) train the reader adapter to keep its other answers.
    Every concept gets a prompt length drawn in `[min_prompt_length, max_prompt_length]` (nested
    truncation: the projector learns to put the most identity into the first rows). `labels` are
    the answer tokens only: the concept preamble with its slots, the image tokens, the question,
    the chat markup and the padding are all -100.

    With `target_references` (`icpt.identity_targets.TargetReferences`), each batch also carries
    identity targets and reference photos to predict them from (`target_*` keys), drawn from a generator
    seeded by the batch's episodes, so a resumed run draws what an uninterrupted one would.

    With `background_views`, a reference that has a mask also brings its background-only view
    (`reference_background_*` keys): what L_dec's environment term reads. Pass it only for a model with
    `decoupling_weight > 0` (as `icpt train` does): otherwise the views are rendered and encoded for nothing
    (with the prompt rendered from slot counts, not photos, a tenth of a reader step here).
    """

    def __init__(self, processor, min_prompt_length: int, max_prompt_length: int, seed: int = 0,
                 target_references=None, background_views: bool = False):
        if not 1 <= min_prompt_length <= max_prompt_length <= processor.max_prompt_length:
            raise ValueError(
                f"Need 1 <= min_prompt_length ({min_prompt_length}) <= max_prompt_length ({max_prompt_length}) "
                f"<= the processor's max_prompt_length ({processor.max_prompt_length})."
            )
        self.processor = processor
        self.min_prompt_length, self.max_prompt_length, self.seed = min_prompt_length, max_prompt_length, seed
        self.target_references = target_references
        self.background_views = background_views

    def __call__(self, episodes: list[dict]):
        asked = [asked_concepts(e) for e in episodes]
        references = [[{"name": c["name"], "references": c["references"],
                        "masks": (c.get("masks") or None) if self.background_views else None} for c in concepts]
                      for concepts in asked]
        lengths = [drawn_prompt_lengths(e, self.min_prompt_length, self.max_prompt_length, self.seed) for e in episodes]
        images = [[e["image"]] if e.get("image") is not None else [] for e in episodes]
        batch = self.processor(
            messages=[episode_messages(e, with_answer=True) for e in episodes], images=images,
            references=references, prompt_lengths=lengths, add_generation_prompt=False, padding_side="right",
        )
        labels = batch["input_ids"].clone()
        labels[batch["attention_mask"] == 0] = -100
        for b, episode in enumerate(episodes):
            # everything up to the assistant's answer is context, not target; only its tokens are needed, so
            # the concepts come as their slot counts, not as photos to process a second time
            names = [c["name"] for c in asked[b]]
            slots = ConceptSlots(names, {name: lengths[b][name] for name in names})
            prompt = self.processor(
                messages=[episode_messages(episode, with_answer=False)], images=[images[b]],
                concepts=slots, retrieved=[names], add_generation_prompt=True,
            )["input_ids"][0]
            if not torch.equal(batch["input_ids"][b, : len(prompt)], prompt):
                raise ValueError("The chat template does not render the prompt as a prefix of the full conversation.")
            labels[b, : len(prompt)] = -100
        batch["labels"] = labels
        if self.target_references is not None:
            key = "|".join(f"{e['question']}|{e['answer']}|{e.get('target', '')}" for e in episodes)
            digest = int.from_bytes(hashlib.sha256(f"{self.seed}|{key}".encode()).digest()[:8], "little")
            batch.update(self.target_references.draw(np.random.default_rng(digest)))
        return batch


class ICPTTrainer(Trainer):
    """`transformers.Trainer` that also logs the LM loss, the two regularizers and the identity-target loss."""

    COMPONENTS = ("lm_loss", "decoupling_loss", "separation_loss", "identity_target_loss")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._component_sums, self._component_counts = {}, {}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        for name in self.COMPONENTS:
            value = getattr(outputs, name, None)
            if value is not None:  # a component not computed in this run is not logged
                self._component_sums[name] = self._component_sums.get(name, 0.0) + float(value.detach())
                self._component_counts[name] = self._component_counts.get(name, 0) + 1
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    # answer tokens the evaluation reads: enough for a leading space and "Yes" / "No" in any tokenizer
    ANSWER_TOKENS = 4

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """The loss, and for each episode the first `ANSWER_TOKENS` answer tokens with the tokens the model predicts
        for them (teacher forcing): what `RecognitionMetrics` reads; not the full logits, which for a real
        vocabulary would not fit in memory. Positions past the answer hold -100."""
        inputs = self._prepare_inputs(inputs)
        labels = inputs["labels"]
        with torch.no_grad():
            outputs = model(**inputs)
        loss = outputs.loss.detach()
        if prediction_loss_only:
            return loss, None, None
        start = (labels != -100).int().argmax(dim=1)  # the first answer token of each row
        positions = (start[:, None] + torch.arange(self.ANSWER_TOKENS, device=labels.device)).clamp(max=labels.shape[1] - 1)
        answer = labels.gather(1, positions)
        answer[positions < start[:, None] + torch.arange(self.ANSWER_TOKENS, device=labels.device)] = -100  # clamped
        predicted = outputs.logits.gather(1, (positions - 1)[..., None].expand(-1, -1, outputs.logits.shape[-1]))
        predicted = predicted.argmax(dim=-1)  # logits at t predict the token at t + 1
        predicted[answer == -100] = -100
        return loss, predicted, answer

    def _load_best_model(self):
        """`load_best_model_at_end`: the best checkpoint's trained weights (the backbone is not in checkpoints)."""
        self._load_from_checkpoint(self.state.best_model_checkpoint)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        """Resume what ICPT trains (the projector, and the reader adapter if any) from a checkpoint's weights."""
        weights = Path(resume_from_checkpoint) / "model.safetensors"
        if not weights.is_file():
            raise FileNotFoundError(f"{resume_from_checkpoint} holds no model.safetensors: it is not an ICPT training checkpoint.")
        model = self.accelerator.unwrap_model(model if model is not None else self.model)
        state_dict = load_file(weights)
        unexpected = sorted(state_dict.keys() - model.trained_state_dict().keys())
        if unexpected:
            raise ValueError(f"{resume_from_checkpoint} holds weights this model does not have: {unexpected[:5]}")
        model.load_trained_state_dict(state_dict)

    def log(self, logs, *args, **kwargs):
        if self._component_counts and "loss" in logs:
            names = sorted(self._component_sums)
            means = torch.tensor([self._component_sums[n] / self._component_counts[n] for n in names],
                                 device=self.args.device)
            if self.accelerator.num_processes > 1:  # every process logs at the same step: the mean over processes
                means = self.accelerator.reduce(means, reduction="mean")
            for name, value in zip(names, means.tolist()):
                logs[name] = round(value, 4)
            self._component_sums, self._component_counts = {}, {}
        super().log(logs, *args, **kwargs)


class RecognitionMetrics:
    """`compute_metrics` for `ICPTTrainer`: weighted recognition accuracy (0.5 * yes on photos of the concept +
    0.5 * no on other photos) of the first answer token, through the project's `recognition` metric.

    Questions whose answer is neither yes nor no (captions, attributes) are left out; `recognition_questions`
    says how many were scored.

    Example:

    ```python
    >>> trainer = ICPTTrainer(..., eval_dataset=held_out, compute_metrics=RecognitionMetrics(processor.tokenizer))  # doctest: +SKIP
    >>> trainer.evaluate()["eval_recognition_weighted"]  # doctest: +SKIP
    0.74
    ```
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.metric = load_metric("recognition", keep_in_memory=True)

    def __call__(self, evaluation) -> dict:
        predicted = [self._decode(row) for row in np.asarray(evaluation.predictions)]
        expected = [read_yes_no(self._decode(row)) for row in np.asarray(evaluation.label_ids)]
        scored = [(prediction, answer == "yes") for prediction, answer in zip(predicted, expected) if answer is not None]
        if not scored:
            raise ValueError("No evaluation episode is a yes/no recognition question: give an eval dataset of "
                             "recognition episodes (e.g. `icpt episodes ... ` writes one to OUTPUT/eval).")
        result = self.metric.compute(predictions=[p for p, _ in scored], references=[r for _, r in scored])
        return {"recognition_weighted": result["weighted_accuracy"], "recognition_positive": result["positive_accuracy"],
                "recognition_negative": result["negative_accuracy"], "recognition_questions": len(scored)}

    def _decode(self, tokens) -> str:
        return self.tokenizer.decode([int(token) for token in tokens if token >= 0], skip_special_tokens=True)
