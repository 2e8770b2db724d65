"""The concept bank: a user's encoded concepts, made once and reused for every question.

Also the one helper that uploads an ICPT repository (a projector or a concept bank) to the Hub:
`push_folder_to_hub`, which commits the files first and the model card after them.
"""

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .atomic_save import atomic_destination
from .input_checks import LABEL_PATTERN, ICPTInputError, looks_like_local_path

# the file that holds a pushed bank in its Hub repository (and the concepts of a personalized checkpoint)
BANK_FILENAME = "concept_bank.safetensors"
# the format tag in a bank file's metadata
BANK_FORMAT = "icpt-concept-bank"
# keyword arguments of `push_to_hub` (the same as `PreTrainedModel.push_to_hub`'s)
PUSH_KWARGS = ("commit_message", "commit_description", "private", "token", "revision", "create_pr")
# keyword arguments of `from_pretrained` that locate a file on the Hub
DOWNLOAD_KWARGS = ("revision", "cache_dir", "force_download", "local_files_only", "token", "subfolder")


def backbone_fingerprint(vlm) -> str | None:
    """
    A short id of a backbone's input-embedding space, recorded in every bank its model encodes: the family, the
    embedding matrix's shape and the signs of 64 x 64 of its entries (rows spread over the vocabulary). The same
    backbone gives the same id in any dtype and on any device; another backbone of the same width does not.
    `None` while the weights are not materialized (meta device).

    Example:

    ```python
    >>> backbone_fingerprint(model.vlm)  # doctest: +SKIP
    '3f0c9a81d2b4e657'
    ```
    """
    weight = vlm.get_input_embeddings().weight
    if weight.device.type == "meta":
        return None
    step = max(1, weight.shape[0] // 64)
    corner = weight.detach()[::step][:64, :64].float().cpu()
    digest = hashlib.sha256(f"{vlm.config.model_type}:{tuple(weight.shape)}:".encode())
    digest.update(bytes(torch.signbit(corner).flatten().to(torch.uint8).tolist()))
    return digest.hexdigest()[:16]


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

    def __init__(self, labels, prompts, lengths, complexity, descriptors, base_model_name_or_path=None,
                 backbone_fingerprint=None):
        self.labels = list(labels)
        self.prompts = prompts  # (C, rows, d_lm)
        integer = isinstance(lengths, torch.Tensor) and not lengths.is_floating_point() and lengths.dtype != torch.bool
        self._lengths = lengths.long() if integer else lengths  # (C,)
        self.complexity = complexity  # (C,)
        self.descriptors = descriptors  # (C, d_lm)
        self.base_model_name_or_path = base_model_name_or_path
        # which backbone's embedding space the rows live in (see `backbone_fingerprint`)
        self.backbone_fingerprint = backbone_fingerprint
        self._check()
        self._positions = {label: i for i, label in enumerate(self.labels)}

    def _check(self):
        """Every way a bank can be malformed, as one `ICPTInputError` that says what is wrong."""
        labels, prompts = self.labels, self.prompts
        problems = []
        if not labels:
            problems.append("it holds no concepts")
        bad = [label for label in labels if not isinstance(label, str) or not LABEL_PATTERN.fullmatch(label)]
        if bad:
            problems.append(f"labels {bad[:5]!r} are not one word in angle brackets like '<bo>'")
        seen, repeated = set(), set()
        for label in labels:
            (repeated if label in seen else seen).add(label)
        if repeated:
            problems.append(f"labels {sorted(map(str, repeated))[:5]} are given more than once (each concept needs a unique label)")
        tensors = {"prompts": prompts, "lengths": self._lengths, "complexity": self.complexity,
                   "descriptors": self.descriptors}
        shapes = {"prompts": 3, "lengths": 1, "complexity": 1, "descriptors": 2}
        for name, tensor in tensors.items():
            if not isinstance(tensor, torch.Tensor):
                problems.append(f"{name} is a {type(tensor).__name__}, not a tensor")
            elif tensor.dim() != shapes[name]:
                problems.append(f"{name} has {tensor.dim()} dimensions instead of {shapes[name]}")
            elif tensor.shape[0] != len(labels):
                problems.append(f"{name} has {tensor.shape[0]} entries for {len(labels)} labels")
        if not problems:
            if not prompts.is_floating_point() or not self.descriptors.is_floating_point():
                problems.append("prompts and descriptors must be floating-point")
            elif prompts.shape[1] < 1 or prompts.shape[2] < 1:
                problems.append(f"prompts have shape {tuple(prompts.shape)}: each concept needs at least one row")
            elif self.descriptors.shape[1] != prompts.shape[2]:
                problems.append(f"descriptors are {self.descriptors.shape[1]} wide but prompts {prompts.shape[2]}")
            elif not all(bool(torch.isfinite(t.float()).all()) for t in (prompts, self.descriptors, self.complexity)):
                problems.append("prompts, descriptors or complexity hold NaN or infinite values")
            elif self._lengths.is_floating_point() or self._lengths.dtype == torch.bool:
                problems.append(f"lengths must be integers, got {self._lengths.dtype}")
            else:
                outside = [(label, int(n)) for label, n in zip(labels, self._lengths.tolist()) if not 1 <= n <= prompts.shape[1]]
                if outside:
                    problems.append(f"prompt lengths {outside[:5]} lie outside 1..{prompts.shape[1]} (its rows per concept)")
        if problems:
            raise ICPTInputError(f"Invalid concept bank: {'; '.join(problems)}. Re-encode the concepts with "
                                 "model.encode_concepts(...).")

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
        return label in self._positions

    def __repr__(self):
        return f"ConceptBank({self.lengths}, hidden_size={self.hidden_size})"

    def index(self, label: str) -> int:
        """The position of `label` in this bank."""
        if label not in self._positions:
            raise KeyError(f"Unknown concept {label!r}; this bank holds {self.labels[:20]}{' ...' if len(self) > 20 else ''}.")
        return self._positions[label]

    def rows(self, label: str) -> torch.Tensor:
        """The `(length, d_lm)` prompt rows that the model injects for `label`."""
        i = self.index(label)
        return self.prompts[i, : self._lengths[i]]

    def select(self, labels) -> "ConceptBank":
        """A bank with only `labels`, in that order."""
        idx = torch.tensor([self.index(label) for label in labels], dtype=torch.long)
        return ConceptBank(labels, self.prompts[idx], self._lengths[idx], self.complexity[idx],
                           self.descriptors[idx], self.base_model_name_or_path, self.backbone_fingerprint)

    def merge(self, *others: "ConceptBank") -> "ConceptBank":
        """
        This bank's concepts followed by each of `others`' (one copy, however many banks); labels must not
        repeat, and every bank must come from the same backbone and projector.

        Example:

        ```python
        >>> bank = bo_bank.merge(kiki_bank, mia_bank)  # doctest: +SKIP
        >>> bank.labels  # doctest: +SKIP
        ['<bo>', '<kiki>', '<mia>']
        ```
        """
        banks = (self, *others)
        for other in others:
            if other.hidden_size != self.hidden_size or other.backbone_fingerprint != self.backbone_fingerprint:
                raise ICPTInputError(
                    f"Cannot merge these banks: they were made for different backbones ({self.base_model_name_or_path}, "
                    f"{self.hidden_size}-wide, and {other.base_model_name_or_path}, {other.hidden_size}-wide); "
                    "encode all concepts with one model."
                )
            if other.prompts.shape[1] != self.prompts.shape[1]:
                raise ICPTInputError(
                    f"Cannot merge banks with {self.prompts.shape[1]} and {other.prompts.shape[1]} rows per concept: "
                    "they come from different projectors; encode all concepts with one model."
                )
        return ConceptBank([label for bank in banks for label in bank.labels],
                           torch.cat([bank.prompts for bank in banks]), torch.cat([bank._lengths for bank in banks]),
                           torch.cat([bank.complexity for bank in banks]), torch.cat([bank.descriptors for bank in banks]),
                           self.base_model_name_or_path, self.backbone_fingerprint)

    def to(self, *args, **kwargs) -> "ConceptBank":
        prompts = self.prompts.to(*args, **kwargs)
        return ConceptBank(self.labels, prompts, self._lengths.to(prompts.device), self.complexity,
                           self.descriptors.to(*args, **kwargs), self.base_model_name_or_path, self.backbone_fingerprint)

    def save(self, path: str | os.PathLike) -> None:
        """Write the bank to one safetensors file (atomically: a temporary file, then a rename)."""
        tensors = {
            "prompts": self.prompts.detach().cpu().contiguous(),
            "lengths": self._lengths.detach().cpu().contiguous(),
            "complexity": self.complexity.detach().float().cpu().contiguous(),
            "descriptors": self.descriptors.detach().cpu().contiguous(),
        }
        metadata = {"format": BANK_FORMAT, "labels": json.dumps(self.labels),
                    "base_model_name_or_path": self.base_model_name_or_path or "",
                    "backbone_fingerprint": self.backbone_fingerprint or ""}
        with atomic_destination(path) as tmp:
            save_file(tensors, tmp, metadata=metadata)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ConceptBank":
        """
        Read a bank written by `save`, checked: a damaged file, missing tensors or metadata, bad lengths or
        NaN rows are an `ICPTInputError` that names the file.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"No concept bank at {path}: make one with model.encode_concepts(...).save(path).")
        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as error:
            raise ICPTInputError(
                f"{path} is not a readable concept bank (damaged, truncated or not a safetensors file: {error}); "
                "write it again with bank.save(path)."
            ) from None
        if metadata.get("format") != BANK_FORMAT:
            raise ICPTInputError(f"{path} is not an ICPT concept bank (no {BANK_FORMAT!r} format tag in its metadata).")
        try:
            labels = json.loads(metadata["labels"])
        except (KeyError, json.JSONDecodeError):
            raise ICPTInputError(f"Concept bank {path} has no readable 'labels' metadata; re-encode the concepts.") from None
        if not isinstance(labels, list):
            raise ICPTInputError(f"Concept bank {path}: its 'labels' metadata is not a list; re-encode the concepts.")
        missing = {"prompts", "lengths", "complexity", "descriptors"} - tensors.keys()
        if missing:
            raise ICPTInputError(f"Concept bank {path} is missing tensors {sorted(missing)}; re-encode the concepts.")
        try:
            return cls(labels, tensors["prompts"], tensors["lengths"], tensors["complexity"], tensors["descriptors"],
                       metadata.get("base_model_name_or_path") or None, metadata.get("backbone_fingerprint") or None)
        except ICPTInputError as error:
            raise ICPTInputError(f"{path}: {error}") from None

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
        path = Path(repo_id_or_path).expanduser()
        if path.is_file():
            return cls.load(path)
        if path.is_dir():
            return cls.load(path / hub_kwargs.get("subfolder", "") / BANK_FILENAME)
        if looks_like_local_path(repo_id_or_path):
            raise FileNotFoundError(f"No concept bank at {repo_id_or_path}: no such file or folder; check the path.")
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
