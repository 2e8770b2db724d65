"""The concept bank: a user's encoded concepts, made once and reused for every question."""

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


class ConceptBank:
    """
    Encoded concepts: for each label, its prompt rows, how many of them it uses, its visual
    complexity and its pooled descriptor. Made by `ICPTForConditionalGeneration.encode_concepts`,
    passed to `ICPTProcessor` (which inserts `lengths[label]` prompt slots per concept) and to the
    model's `generate()` / `forward()` (which fills those slots with the rows).

    A bank holds no photos, only vectors, and records the embedding width and backbone it was
    made for, so it cannot be used with an incompatible model by accident.

    Example:

    ```python
    >>> bank = model.encode_concepts(processor.prepare_references({"<bo>": ["bo1.jpg", "bo2.jpg"]}))  # doctest: +SKIP
    >>> bank.save("my_concepts.safetensors")  # doctest: +SKIP
    >>> bank = ConceptBank.load("my_concepts.safetensors")  # doctest: +SKIP
    >>> bank.lengths["<bo>"]  # doctest: +SKIP
    5
    ```
    """

    def __init__(self, labels, prompts, lengths, complexity, descriptors, base_model_name_or_path=None):
        labels = list(labels)
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ValueError(f"Concept label(s) {repeated} given more than once: each concept needs a unique label.")
        count = len(labels)
        for name, tensor in (("prompts", prompts), ("lengths", lengths), ("complexity", complexity),
                             ("descriptors", descriptors)):
            if tensor.shape[0] != count:
                raise ValueError(f"ConceptBank: {name} has {tensor.shape[0]} entries for {count} labels.")
        self.labels = labels
        self.prompts = prompts  # (C, max_prompt_length, d_lm)
        self._lengths = lengths.long()  # (C,)
        self.complexity = complexity  # (C,)
        self.descriptors = descriptors  # (C, d_lm)
        self.base_model_name_or_path = base_model_name_or_path

    @property
    def hidden_size(self) -> int:
        return self.prompts.shape[-1]

    @property
    def lengths(self) -> dict[str, int]:
        """Prompt tokens per concept, `{label: length}`."""
        return dict(zip(self.labels, self._lengths.tolist()))

    def __len__(self):
        return len(self.labels)

    def __contains__(self, label):
        return label in self.labels

    def __repr__(self):
        return f"ConceptBank({self.lengths}, hidden_size={self.hidden_size})"

    def index(self, label: str) -> int:
        if label not in self.labels:
            raise KeyError(f"Unknown concept {label!r}; this bank holds {self.labels}.")
        return self.labels.index(label)

    def rows(self, label: str) -> torch.Tensor:
        """The `(length, d_lm)` prompt rows that the model injects for `label`."""
        i = self.index(label)
        return self.prompts[i, : self._lengths[i]]

    def select(self, labels) -> "ConceptBank":
        """A bank with only `labels`, in that order."""
        idx = torch.tensor([self.index(label) for label in labels], dtype=torch.long)
        return ConceptBank(labels, self.prompts[idx], self._lengths[idx], self.complexity[idx],
                           self.descriptors[idx], self.base_model_name_or_path)

    def merge(self, other: "ConceptBank") -> "ConceptBank":
        """This bank's concepts followed by `other`'s; labels must not repeat and widths must match."""
        if other.hidden_size != self.hidden_size:
            raise ValueError(f"Cannot merge banks of widths {self.hidden_size} and {other.hidden_size}.")
        return ConceptBank(self.labels + other.labels, torch.cat([self.prompts, other.prompts]),
                           torch.cat([self._lengths, other._lengths]), torch.cat([self.complexity, other.complexity]),
                           torch.cat([self.descriptors, other.descriptors]), self.base_model_name_or_path)

    def to(self, *args, **kwargs) -> "ConceptBank":
        return ConceptBank(self.labels, self.prompts.to(*args, **kwargs), self._lengths.to(self.prompts.device),
                           self.complexity, self.descriptors.to(*args, **kwargs), self.base_model_name_or_path)

    def save(self, path: str | os.PathLike) -> None:
        """Write the bank to one safetensors file (atomically: a temporary file, then a rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {
            "prompts": self.prompts.detach().cpu().contiguous(),
            "lengths": self._lengths.detach().cpu().contiguous(),
            "complexity": self.complexity.detach().float().cpu().contiguous(),
            "descriptors": self.descriptors.detach().cpu().contiguous(),
        }
        metadata = {"format": "icpt-concept-bank", "labels": json.dumps(self.labels),
                    "base_model_name_or_path": self.base_model_name_or_path or ""}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata=metadata)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ConceptBank":
        """Read a bank written by `save`."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"No concept bank at {path}: make one with model.encode_concepts(...).save(path).")
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        if metadata.get("format") != "icpt-concept-bank":
            raise ValueError(f"{path} is not an ICPT concept bank (no 'icpt-concept-bank' format tag).")
        tensors = load_file(str(path))
        missing = {"prompts", "lengths", "complexity", "descriptors"} - tensors.keys()
        if missing:
            raise ValueError(f"Concept bank {path} is missing tensors {sorted(missing)}; re-encode the concepts.")
        return cls(json.loads(metadata["labels"]), tensors["prompts"], tensors["lengths"], tensors["complexity"],
                   tensors["descriptors"], metadata.get("base_model_name_or_path") or None)
