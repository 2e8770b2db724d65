"""The concept bank: a user's encoded concepts, made once and reused for every question."""

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .atomic_save import atomic_destination
from .concept_retrieval import top_k as search
from .hub_io import DOWNLOAD_KWARGS, download_bank, push_to_hub
from .input_checks import LABEL_PATTERN, ICPTInputError, looks_like_local_path

# the file that holds a pushed bank in its Hub repository (and the concepts of a personalized checkpoint)
BANK_FILENAME = "concept_bank.safetensors"
# the format tag in a bank file's metadata
BANK_FORMAT = "icpt-concept-bank"


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
    complexity (NaN when the projector's length is fixed, which makes it irrelevant), its pooled descriptor and its
    retrieval key. Made by `ICPTForConditionalGeneration.encode_concepts`,
    passed to `ICPTProcessor` (which inserts `lengths[label]` prompt slots per concept a text names) and to the
    model's `generate()` / `forward()` (which fills those slots with the rows).

    A bank holds no photos, only vectors, and records the embedding width and backbone it was
    made for, so it cannot be used with an incompatible model by accident.

    Built for many concepts (docs/performance.md measures it from 100 to 100,000):
    - a label index (a dict): `index`, `rows`, `select` and `in` cost the same in a bank of any size;
    - `add`, `remove` and `rename` change the bank in place, without copying it (it grows by half its size when full;
      `remove` moves the last concepts into the freed places);
    - `load` maps the file into memory (safetensors): rows are read from disk when a question uses them, and the
      pages are shared with the operating system's file cache;
    - `retrieve` finds the concepts a photo most likely shows (one normalized matrix product, see
      `concept_retrieval.top_k`).

    Memory per concept: `rows x d_lm x 4` bytes of prompt rows (float32) + `d_lm x 4` of descriptor +
    `d_v x 2` of retrieval key (float16) + 12 of length and complexity, plus about 150 bytes for the label and its
    index entry. For the embedded default (8 rows, d_lm = 256, d_v = 128): about 9.6 KB, so 100,000 concepts take
    about 0.96 GB (mapped from the file when loaded).

    A bank is read by any number of threads at once; change it (`add`, `remove`, `rename`) only while no call is
    reading it.

    Example:

    ```python
    >>> bank = model.encode_concepts(**processor.prepare_references({"<bo>": ["bo1.jpg", "bo2.jpg"]}))  # doctest: +SKIP
    >>> bank.add(model.encode_concepts(**processor.prepare_references({"<kiki>": ["kiki.jpg"]})))  # doctest: +SKIP
    >>> bank.rename("<kiki>", "<kiki-the-cat>")  # doctest: +SKIP
    >>> bank.save("my_concepts.safetensors")  # doctest: +SKIP
    >>> bank = ConceptBank.load("my_concepts.safetensors")  # doctest: +SKIP
    >>> bank.lengths["<bo>"]  # doctest: +SKIP
    5
    >>> bank.push_to_hub("me/my-pets", private=True)  # doctest: +SKIP
    >>> bank = ConceptBank.from_pretrained("me/my-pets")  # doctest: +SKIP
    ```
    """

    def __init__(self, labels, prompts, lengths, complexity, descriptors, base_model_name_or_path=None,
                 backbone_fingerprint=None, keys=None):
        labels = list(labels)
        integer = isinstance(lengths, torch.Tensor) and not lengths.is_floating_point() and lengths.dtype != torch.bool
        tensors = {"prompts": prompts,  # (C, rows, d_lm)
                   "lengths": lengths.long() if integer else lengths,  # (C,)
                   "complexity": complexity,  # (C,)
                   "descriptors": descriptors,  # (C, d_lm)
                   "keys": keys}  # (C, d_v) unit vectors, or None (a bank that cannot retrieve)
        self.base_model_name_or_path = base_model_name_or_path
        # which backbone's embedding space the rows live in (see `backbone_fingerprint`)
        self.backbone_fingerprint = backbone_fingerprint
        _check(labels, tensors)
        self._labels = labels
        self._positions = {label: i for i, label in enumerate(labels)}
        # storage may hold more entries than concepts (room to `add` into); the first len(self) are the bank
        self._storage = tensors
        # whether this bank alone holds its storage, so that `remove` may write into it (the caller's tensors never)
        self._owned = False

    @classmethod
    def _owning(cls, *args, **kwargs) -> "ConceptBank":
        bank = cls(*args, **kwargs)
        bank._owned = True
        return bank

    # ---------------------------------------------------------------- contents

    @property
    def labels(self) -> list[str]:
        """The labels, in bank order (read-only: change them with `add`, `remove`, `rename`)."""
        return self._labels

    @property
    def prompts(self) -> torch.Tensor:
        """`(C, rows, d_lm)` prompt rows; concept i uses its first `lengths[i]`."""
        return self._storage["prompts"][: len(self)]

    @property
    def _lengths(self) -> torch.Tensor:
        return self._storage["lengths"][: len(self)]

    @property
    def complexity(self) -> torch.Tensor:
        return self._storage["complexity"][: len(self)]

    @property
    def descriptors(self) -> torch.Tensor:
        """`(C, d_lm)` the mean of each concept's used prompt rows."""
        return self._storage["descriptors"][: len(self)]

    @property
    def keys(self) -> torch.Tensor | None:
        """`(C, d_v)` retrieval keys (see `retrieve`), or `None` for a bank encoded before ICPT made them."""
        keys = self._storage["keys"]
        return None if keys is None else keys[: len(self)]

    @property
    def hidden_size(self) -> int:
        return self._storage["prompts"].shape[-1]

    @property
    def lengths(self) -> dict[str, int]:
        """Prompt tokens per concept, `{label: length}` (a new dict of every concept: use `length(label)` for one)."""
        return dict(zip(self._labels, self._lengths.tolist()))

    def length(self, label: str) -> int:
        """Prompt tokens of one concept."""
        return int(self._storage["lengths"][self.index(label)])

    def __len__(self):
        return len(self._labels)

    def __contains__(self, label):
        return label in self._positions

    def __repr__(self):
        shown = ", ".join(f"{label!r}: {self.length(label)}" for label in self._labels[:5])
        more = f", ... {len(self) - 5} more" if len(self) > 5 else ""
        return f"ConceptBank({{{shown}{more}}}, hidden_size={self.hidden_size})"

    def index(self, label: str) -> int:
        """The position of `label` in this bank."""
        position = self._positions.get(label)
        if position is None:
            raise KeyError(f"Unknown concept {label!r}; this bank holds {self._labels[:20]}{' ...' if len(self) > 20 else ''}.")
        return position

    def rows(self, label: str) -> torch.Tensor:
        """The `(length, d_lm)` prompt rows that the model injects for `label`."""
        i = self.index(label)
        return self._storage["prompts"][i, : self._storage["lengths"][i]]

    def select(self, labels) -> "ConceptBank":
        """A bank with only `labels`, in that order (a copy of their rows; the cost does not grow with the bank)."""
        idx = torch.tensor([self.index(label) for label in labels], dtype=torch.long)
        return ConceptBank._owning(labels, **self._gathered(idx), base_model_name_or_path=self.base_model_name_or_path,
                                   backbone_fingerprint=self.backbone_fingerprint)

    def _gathered(self, idx: torch.Tensor) -> dict:
        return {name: None if tensor is None else tensor[idx.to(tensor.device)] for name, tensor in self._storage.items()}

    @classmethod
    def encode(cls, model, processor, references: dict, batch_size: int = 32, progress: bool = False) -> "ConceptBank":
        """
        Encode many concepts, `batch_size` at a time (one vision-tower and projector pass per batch), into one bank
        that grows in place: building a bank of N concepts costs N times one concept, and memory holds one batch
        of photos at a time.

        Args:
            model: an `ICPTForConditionalGeneration`.
            processor: its `ICPTProcessor`.
            references: `{label: [photos]}`.
            batch_size: concepts per pass.
            progress: show a progress bar (concepts encoded).

        Example:

        ```python
        >>> bank = ConceptBank.encode(model, processor, {"<bo>": ["bo1.jpg"], "<kiki>": ["kiki1.jpg", "kiki2.jpg"]})  # doctest: +SKIP
        >>> len(bank)  # doctest: +SKIP
        2
        ```
        """
        if not references:
            raise ICPTInputError("No concepts to encode: give {label: [photos]}.")
        if batch_size < 1:
            raise ICPTInputError(f"batch_size must be at least 1, got {batch_size}.")
        items = list(references.items())
        bank = None
        with tqdm(total=len(items), desc="Encoding concepts", unit="concept", disable=not progress) as bar:
            for start in range(0, len(items), batch_size):
                inputs = processor.prepare_references(dict(items[start : start + batch_size])).to(model.device)
                part = model.encode_concepts(**inputs)
                bank = part if bank is None else bank.add(part)
                bar.update(len(part))
        return bank

    # ---------------------------------------------------------------- retrieval

    def retrieve(self, query_keys: torch.Tensor, top_k: int = 5, return_scores: bool = False):
        """
        The `top_k` concepts whose retrieval keys are closest to each query key (cosine similarity), best first.

        Args:
            query_keys: `(Q, d_v)` unit keys of Q query photos (`model.retrieve_concepts` computes them from photos).
            top_k: concepts per query (all of them when the bank holds fewer).
            return_scores: also return the `(Q, top_k)` cosine similarities.

        Returns:
            One list of labels per query (and the scores).

        Example:

        ```python
        >>> bank.retrieve(bank.keys[[0]], top_k=2)  # doctest: +SKIP
        [['<bo>', '<kiki>']]
        ```
        """
        keys = self.keys
        if keys is None:
            raise ICPTInputError(
                "This concept bank holds no retrieval keys (it was encoded by an ICPT version without retrieval): "
                "encode its concepts again with model.encode_concepts(...) to retrieve from it."
            )
        if query_keys.dim() != 2 or query_keys.shape[1] != keys.shape[1]:
            raise ICPTInputError(
                f"Query keys of shape {tuple(query_keys.shape)} do not match this bank's {keys.shape[1]}-wide retrieval "
                "keys: compute them with the model that encoded the bank (model.retrieve_concepts)."
            )
        scores, indices = search(keys, query_keys.to(keys.device), top_k)
        labels = [[self._labels[i] for i in row] for row in indices.tolist()]
        return (labels, scores.float()) if return_scores else labels

    # ---------------------------------------------------------------- changing a bank

    def _check_compatible(self, other: "ConceptBank", action: str) -> None:
        if not isinstance(other, ConceptBank):
            raise ICPTInputError(f"Cannot {action} a {type(other).__name__}: give a ConceptBank (from model.encode_concepts).")
        if other.hidden_size != self.hidden_size or other.backbone_fingerprint != self.backbone_fingerprint:
            raise ICPTInputError(
                f"Cannot {action} these banks: they were made for different backbones ({self.base_model_name_or_path}, "
                f"{self.hidden_size}-wide, and {other.base_model_name_or_path}, {other.hidden_size}-wide); "
                "encode all concepts with one model."
            )
        if other.prompts.shape[1] != self.prompts.shape[1]:
            raise ICPTInputError(
                f"Cannot {action} banks with {self.prompts.shape[1]} and {other.prompts.shape[1]} rows per concept: "
                "they come from different projectors; encode all concepts with one model."
            )

    def _new_labels(self, banks) -> list[str]:
        labels = [label for bank in banks for label in bank.labels]
        repeated = sorted({label for label in labels if label in self._positions} | _repeated(labels))
        if repeated:
            raise ICPTInputError(
                f"labels {repeated[:5]} are given more than once (each concept needs a unique label): rename one "
                "with bank.rename(old, new), or remove the old concept with bank.remove(label)."
            )
        return labels

    def merge(self, *others: "ConceptBank") -> "ConceptBank":
        """
        A new bank: this bank's concepts followed by each of `others'` (one copy, however many banks); labels must not
        repeat, and every bank must come from the same backbone and projector. `add` does the same in place.

        Example:

        ```python
        >>> bank = bo_bank.merge(kiki_bank, mia_bank)  # doctest: +SKIP
        >>> bank.labels  # doctest: +SKIP
        ['<bo>', '<kiki>', '<mia>']
        ```
        """
        banks = (self, *others)
        for other in others:
            self._check_compatible(other, "merge")
        labels = self._labels + self._new_labels(others)
        keys = None if any(bank.keys is None for bank in banks) else torch.cat([bank.keys for bank in banks])
        return ConceptBank._owning(labels, torch.cat([bank.prompts for bank in banks]),
                                   torch.cat([bank._lengths for bank in banks]),
                                   torch.cat([bank.complexity for bank in banks]),
                                   torch.cat([bank.descriptors for bank in banks]), self.base_model_name_or_path,
                                   self.backbone_fingerprint, keys)

    def add(self, *others: "ConceptBank") -> "ConceptBank":
        """
        Append the concepts of `others` to this bank, in place; returns the bank. The rows already in the bank are
        not copied (room for more is reserved as the bank grows), so adding one concept to a bank of any size costs
        the same on average. A bank without retrieval keys makes the whole bank one without them.

        Example:

        ```python
        >>> bank.add(model.encode_concepts(**processor.prepare_references({"<mia>": ["mia.jpg"]})))  # doctest: +SKIP
        >>> "<mia>" in bank  # doctest: +SKIP
        True
        ```
        """
        for other in others:
            self._check_compatible(other, "add")
        labels = self._new_labels(others)
        if not labels:
            return self
        start, end = len(self), len(self) + len(labels)
        if any(other.keys is None for other in others):
            self._storage["keys"] = None
        self._reserve(end)
        for other in others:
            stop = start + len(other)
            for name, tensor in self._storage.items():
                if tensor is not None:
                    tensor[start:stop] = getattr(other, "_lengths" if name == "lengths" else name).to(tensor)
            start = stop
        self._positions.update((label, i) for i, label in enumerate(labels, len(self)))
        self._labels.extend(labels)
        return self

    def _reserve(self, count: int) -> None:
        """Room for `count` concepts: a new storage half again as large when the current one is full."""
        capacity = self._storage["prompts"].shape[0]
        if count <= capacity:
            return
        capacity = max(count, capacity + capacity // 2)
        storage = {}
        for name, tensor in self._storage.items():
            if tensor is None:
                storage[name] = None
                continue
            grown = tensor.detach().new_zeros((capacity, *tensor.shape[1:]))
            if name == "lengths":
                grown.fill_(1)  # spare entries stay valid lengths
            grown[: len(self)] = tensor.detach()[: len(self)]
            storage[name] = grown
        self._storage, self._owned = storage, True

    def remove(self, *labels: str) -> "ConceptBank":
        """
        Remove concepts, in place; returns the bank. Each removed concept's place is taken by the bank's last one (no
        other rows move), so the cost does not grow with the bank; the first change of a bank built from tensors
        given by the caller copies them once, so that they are never written to.

        Example:

        ```python
        >>> bank.remove("<kiki>")  # doctest: +SKIP
        >>> "<kiki>" in bank  # doctest: +SKIP
        False
        ```
        """
        for label in labels:
            self.index(label)
        if len(set(labels)) >= len(self):
            raise ICPTInputError("A concept bank keeps at least one concept: remove fewer, or delete the bank file.")
        if not self._owned:
            self._storage = {name: None if t is None else t.detach().clone() for name, t in self._storage.items()}
            self._owned = True
        for label in dict.fromkeys(labels):
            i, last = self._positions.pop(label), len(self) - 1
            if i != last:
                moved = self._labels[last]
                for tensor in self._storage.values():
                    if tensor is not None:
                        tensor[i] = tensor[last]
                self._labels[i], self._positions[moved] = moved, i
            self._labels.pop()
        return self

    def rename(self, old: str, new: str) -> "ConceptBank":
        """
        Give a concept a new label, in place; returns the bank. Its rows stay as they are: the projector read the old
        label when it encoded them, so a renamed concept is read best after encoding it again under its new label.

        Example:

        ```python
        >>> bank.rename("<kiki>", "<kiki-the-cat>")  # doctest: +SKIP
        ```
        """
        i = self.index(old)
        if not isinstance(new, str) or not LABEL_PATTERN.fullmatch(new):
            raise ICPTInputError(f"Invalid concept label {new!r}: write labels as one word in angle brackets, like '<bo>'.")
        if new in self._positions and new != old:
            raise ICPTInputError(f"The bank already holds {new!r}: remove it first, or choose another label.")
        del self._positions[old]
        self._labels[i], self._positions[new] = new, i
        return self

    def to(self, *args, **kwargs) -> "ConceptBank":
        prompts = self.prompts.to(*args, **kwargs)
        keys = None if self.keys is None else self.keys.to(prompts.device)
        return ConceptBank(self._labels, prompts, self._lengths.to(prompts.device), self.complexity,
                           self.descriptors.to(*args, **kwargs), self.base_model_name_or_path, self.backbone_fingerprint,
                           keys)

    # ---------------------------------------------------------------- files

    def save(self, path: str | os.PathLike) -> None:
        """Write the bank to one safetensors file (atomically: a temporary file, then a rename)."""
        tensors = {
            "prompts": self.prompts.detach().cpu().contiguous(),
            "lengths": self._lengths.detach().cpu().contiguous(),
            "complexity": self.complexity.detach().float().cpu().contiguous(),
            "descriptors": self.descriptors.detach().cpu().contiguous(),
        }
        if self.keys is not None:
            tensors["keys"] = self.keys.detach().cpu().contiguous()
        metadata = {"format": BANK_FORMAT, "labels": json.dumps(self._labels),
                    "base_model_name_or_path": self.base_model_name_or_path or "",
                    "backbone_fingerprint": self.backbone_fingerprint or ""}
        with atomic_destination(path) as tmp:
            save_file(tensors, tmp, metadata=metadata)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ConceptBank":
        """
        Read a bank written by `save`, checked: a damaged file, missing tensors or metadata, bad lengths or
        NaN rows are an `ICPTInputError` that names the file.

        The tensors are memory-mapped (copy-on-write): loading reads the file once to check it, and the pages stay
        in the operating system's file cache rather than in the process's own memory.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"No concept bank at {path}: make one with model.encode_concepts(...).save(path).")
        try:
            with safe_open(str(path), framework="pt") as f:  # get_tensor maps the file's pages, it does not copy them
                metadata = f.metadata() or {}
                tensors = {name: f.get_tensor(name) for name in f.keys()}
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
            # the mapping is private to this bank (copy-on-write): `remove` may write into it, the file never changes
            return cls._owning(labels, tensors["prompts"], tensors["lengths"], tensors["complexity"],
                               tensors["descriptors"], metadata.get("base_model_name_or_path") or None,
                               metadata.get("backbone_fingerprint") or None, tensors.get("keys"))
        except ICPTInputError as error:
            raise ICPTInputError(f"{path}: {error}") from None

    # ---------------------------------------------------------------- the Hub

    def push_to_hub(self, repo_id: str, card=None, **kwargs):
        """
        Upload the bank (`concept_bank.safetensors`, vectors only, never photos) to a Hub repository, then its card.

        Args:
            repo_id: `"namespace/name"` (or `"name"` for the token's own namespace).
            card: a `huggingface_hub.ModelCard` to write as the repository's README, or a function
                `full_repo_id -> ModelCard` (e.g. `icpt.cards.card_for(bank)`); by default no card.
            **kwargs: `commit_message`, `commit_description`, `private`, `token`, `revision`, `create_pr`.

        Returns:
            The `huggingface_hub.CommitInfo` of the upload.

        Example:

        ```python
        >>> from icpt.cards import card_for
        >>> bank.push_to_hub("me/my-pets", card=card_for(bank), private=True)  # doctest: +SKIP
        >>> ConceptBank.from_pretrained("me/my-pets").lengths  # doctest: +SKIP
        {'<bo>': 5}
        ```
        """
        return push_to_hub(lambda folder: self.save(folder / BANK_FILENAME), repo_id, card,
                           what="ConceptBank.push_to_hub", default_message="Upload ICPT concept bank", **kwargs)

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
        return cls.load(download_bank(str(repo_id_or_path), BANK_FILENAME, **hub_kwargs))



def _repeated(labels) -> set:
    seen, repeated = set(), set()
    for label in labels:
        (repeated if label in seen else seen).add(label)
    return repeated


def _all_finite(tensor: torch.Tensor) -> bool:
    """Whether a tensor holds no NaN or infinity, without a boolean copy of it: a sum is NaN or infinite when any
    entry is (or, for entries near the float maximum, when it overflows: then each entry is checked)."""
    tensor = tensor.detach()
    if tensor.numel() == 0:
        return True
    return bool(torch.isfinite(tensor.sum())) or bool(torch.isfinite(tensor).all())


def _check(labels: list, tensors: dict) -> None:
    """Every way a bank can be malformed, as one `ICPTInputError` that says what is wrong (linear in its size)."""
    prompts, lengths, descriptors, keys = tensors["prompts"], tensors["lengths"], tensors["descriptors"], tensors["keys"]
    problems = []
    if not labels:
        problems.append("it holds no concepts")
    bad = [label for label in labels if not isinstance(label, str) or not LABEL_PATTERN.fullmatch(label)]
    if bad:
        problems.append(f"labels {bad[:5]!r} are not one word in angle brackets like '<bo>'")
    repeated = _repeated(label for label in labels if isinstance(label, str))
    if repeated:
        problems.append(f"labels {sorted(map(str, repeated))[:5]} are given more than once (each concept needs a unique label)")
    shapes = {"prompts": 3, "lengths": 1, "complexity": 1, "descriptors": 2, "keys": 2}
    for name, tensor in tensors.items():
        if name == "keys" and tensor is None:
            continue
        if not isinstance(tensor, torch.Tensor):
            problems.append(f"{name} is a {type(tensor).__name__}, not a tensor")
        elif tensor.dim() != shapes[name]:
            problems.append(f"{name} has {tensor.dim()} dimensions instead of {shapes[name]}")
        elif tensor.shape[0] != len(labels):
            problems.append(f"{name} has {tensor.shape[0]} entries for {len(labels)} labels")
    if not problems:
        if not prompts.is_floating_point() or not descriptors.is_floating_point():
            problems.append("prompts and descriptors must be floating-point")
        elif prompts.shape[1] < 1 or prompts.shape[2] < 1:
            problems.append(f"prompts have shape {tuple(prompts.shape)}: each concept needs at least one row")
        elif descriptors.shape[1] != prompts.shape[2]:
            problems.append(f"descriptors are {descriptors.shape[1]} wide but prompts {prompts.shape[2]}")
        elif keys is not None and not keys.is_floating_point():
            problems.append("retrieval keys must be floating-point")
        elif not all(_all_finite(t) for t in (prompts, descriptors, keys) if t is not None):
            problems.append("prompts, descriptors or keys hold NaN or infinite values")
        elif bool(torch.isinf(tensors["complexity"]).any()):  # NaN means not measured (a fixed-length projector)
            problems.append("complexity holds infinite values")
        elif lengths.is_floating_point() or lengths.dtype == torch.bool:
            problems.append(f"lengths must be integers, got {lengths.dtype}")
        else:
            outside = ((lengths < 1) | (lengths > prompts.shape[1])).nonzero().flatten()[:5].tolist()
            if outside:
                shown = [(labels[i], int(lengths[i])) for i in outside]
                problems.append(f"prompt lengths {shown} lie outside 1..{prompts.shape[1]} (its rows per concept)")
    if problems:
        raise ICPTInputError(f"Invalid concept bank: {'; '.join(problems)}. Re-encode the concepts with "
                             "model.encode_concepts(...).")
