"""The concept bank: a user's encoded concepts, made once and reused for every question.

Also the one helper that uploads an ICPT repository (a projector or a concept bank) to the Hub:
`push_folder_to_hub`, which commits the files first and the model card after them.
"""

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

# the file that holds a pushed bank in its Hub repository
BANK_FILENAME = "concept_bank.safetensors"
# keyword arguments of `push_to_hub` (the same as `PreTrainedModel.push_to_hub`'s)
PUSH_KWARGS = ("commit_message", "commit_description", "private", "token", "revision", "create_pr")
# keyword arguments of `from_pretrained` that locate a file on the Hub
DOWNLOAD_KWARGS = ("revision", "cache_dir", "force_download", "local_files_only", "token", "subfolder")


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
    >>> bank.push_to_hub("me/my-pets", private=True)  # doctest: +SKIP
    >>> bank = ConceptBank.from_pretrained("me/my-pets")  # doctest: +SKIP
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

    # ---------------------------------------------------------------- the Hub

    def push_to_hub(self, repo_id: str, card=None, **kwargs):
        """
        Upload the bank (`concept_bank.safetensors`, vectors only, never photos) to a Hub repository, then its card.

        Args:
            repo_id: `"namespace/name"` (or `"name"` for the token's own namespace).
            card: a `huggingface_hub.ModelCard` to write as the repository's README. By default, when the
                `icpt` package is installed, the concept bank card of `icpt.cards.concept_bank_card`
                (which needs `base_model_name_or_path` to be a Hub id); otherwise no card.
            **kwargs: `commit_message`, `commit_description`, `private`, `token`, `revision`, `create_pr`.

        Returns:
            The `huggingface_hub.CommitInfo` of the upload.

        Example:

        ```python
        >>> bank.push_to_hub("me/my-pets", private=True)  # doctest: +SKIP
        >>> ConceptBank.from_pretrained("me/my-pets").lengths  # doctest: +SKIP
        {'<bo>': 5}
        ```
        """
        unknown = sorted(set(kwargs) - set(PUSH_KWARGS))
        if unknown:
            raise ValueError(f"ConceptBank.push_to_hub got unknown arguments {unknown}; it takes {list(PUSH_KWARGS)}.")
        kwargs.setdefault("commit_message", "Upload ICPT concept bank")

        def default_card(full_repo_id):
            try:
                from icpt.cards import concept_bank_card
            except ImportError:  # remote-code users have no icpt package: push without a card
                return None
            try:
                return concept_bank_card(repo_id=full_repo_id, base_model=self.base_model_name_or_path,
                                         labels=self.labels, prompt_lengths=self.lengths)
            except ValueError as error:
                raise ValueError(f"Cannot write the concept bank card: {error} Or pass card=... to push_to_hub.") from None

        with tempfile.TemporaryDirectory(prefix="icpt-bank-") as folder:
            self.save(Path(folder) / BANK_FILENAME)
            return push_folder_to_hub(folder, repo_id, card if card is not None else default_card, **kwargs)

    @classmethod
    def from_pretrained(cls, repo_id_or_path: str | os.PathLike, **hub_kwargs) -> "ConceptBank":
        """
        A bank from a local file, a local folder holding `concept_bank.safetensors`, or a Hub repository.

        Args:
            repo_id_or_path: a bank file, a folder, or a Hub repo id (`"me/my-pets"`).
            **hub_kwargs: `revision`, `cache_dir`, `force_download`, `local_files_only`, `token`, `subfolder`.

        Example:

        ```python
        >>> bank = ConceptBank.from_pretrained("me/my-pets")  # doctest: +SKIP
        >>> bank = ConceptBank.from_pretrained("my_concepts.safetensors")  # doctest: +SKIP
        ```
        """
        unknown = sorted(set(hub_kwargs) - set(DOWNLOAD_KWARGS))
        if unknown:
            raise ValueError(f"ConceptBank.from_pretrained got unknown arguments {unknown}; it takes {list(DOWNLOAD_KWARGS)}.")
        path = Path(repo_id_or_path)
        if path.is_file():
            return cls.load(path)
        if path.is_dir():
            return cls.load(path / hub_kwargs.get("subfolder", "") / BANK_FILENAME)
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, HFValidationError, HfHubHTTPError, LocalEntryNotFoundError

        name = str(repo_id_or_path)
        try:
            file = hf_hub_download(name, BANK_FILENAME, **hub_kwargs)
        except HFValidationError:
            raise FileNotFoundError(
                f"No concept bank at {name}: it is neither a file, a folder nor a Hub repo id; check the path."
            ) from None
        except LocalEntryNotFoundError:
            raise FileNotFoundError(
                f"The concept bank {name} is not in the local cache and the Hub cannot be reached: "
                "connect to the Hub (unset HF_HUB_OFFLINE) or give a local file."
            ) from None
        except EntryNotFoundError:
            raise FileNotFoundError(
                f"The Hub repository {name} has no {BANK_FILENAME}: push a bank there with bank.push_to_hub({name!r})."
            ) from None
        except HfHubHTTPError as error:
            raise FileNotFoundError(
                f"Cannot download the concept bank {name} from the Hub ({type(error).__name__}): "
                "check the repo id, its revision and your access token."
            ) from None
        return cls.load(file)


def push_folder_to_hub(folder, repo_id: str, card=None, *, commit_message: str, commit_description=None,
                       private=None, token=None, revision=None, create_pr=False):
    """
    Upload every file of `folder` to `repo_id` in one commit, then write `card` as its README in a second.

    The card goes last so that nothing in the upload (such as a README from transformers) replaces it;
    it is built and validated before anything is uploaded, so a bad card uploads nothing.

    Args:
        folder: the local folder to upload.
        repo_id: `"namespace/name"`, or `"name"` for the token's own namespace; created if missing.
        card: a `huggingface_hub.ModelCard`, a function `full_repo_id -> ModelCard | None`, or `None` (no card).
        commit_message, commit_description, private, token, revision, create_pr: as in `PreTrainedModel.push_to_hub`.

    Returns:
        The `huggingface_hub.CommitInfo` of the upload (with `create_pr=True`, the card goes to the same pull request).

    Example:

    ```python
    >>> push_folder_to_hub("outputs/projector", "me/icpt-tiny", card, commit_message="Upload projector")  # doctest: +SKIP
    ```
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    if "/" not in repo_id:
        repo_id = f"{api.whoami()['name']}/{repo_id}"
    if callable(card):
        card = card(repo_id)
    if card is not None:
        card.validate()
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    commit = api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message,
                               commit_description=commit_description, revision=revision, create_pr=create_pr)
    if card is not None:
        card.push_to_hub(repo_id, token=token, commit_message="Add the ICPT model card",
                         revision=commit.pr_revision or revision)
    return commit
