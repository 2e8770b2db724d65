"""ICPT processor: the backbone's own processor, plus references and concept prompt slots."""

import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from transformers import BatchFeature, ProcessorMixin
from transformers.utils import cached_file

from .backbone_processing import (
    backbone_processor_config,
    build_backbone_processor,
    load_backbone_processor,
    process_reference_images,
)
from .image_io import background_view, load_image, load_mask
from .input_checks import LABEL_PATTERN, ICPTInputError

# the bank file of a personalized checkpoint (the model's `concept_bank.BANK_FILENAME`)
BANK_FILENAME = "concept_bank.safetensors"
# keyword arguments of `from_pretrained` that locate the checkpoint's files
HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies")


@dataclass
class ConceptSlots:
    """What the processor needs of a bank: its labels, in order, and the prompt length of each."""

    labels: list[str]
    lengths: dict[str, int]

    @classmethod
    def read(cls, path) -> "ConceptSlots":
        """The labels and lengths of a concept bank file (the model reads and checks the whole bank)."""
        try:
            with safe_open(str(path), framework="pt") as f:
                labels = json.loads((f.metadata() or {})["labels"])
                lengths = f.get_tensor("lengths").tolist()
        except (SafetensorError, OSError, KeyError, ValueError, RuntimeError) as error:
            raise ICPTInputError(f"{path} is not a readable concept bank ({error}); write it again with bank.save(path).") from None
        if not isinstance(labels, list) or not isinstance(lengths, list) or len(labels) != len(lengths):
            raise ICPTInputError(f"Concept bank {path} has {len(labels)} labels for {len(lengths)} lengths; re-encode the concepts.")
        return cls(labels, dict(zip(labels, lengths)))

    def __post_init__(self):
        self._positions = {label: i for i, label in enumerate(self.labels)}

    def __contains__(self, label):
        return label in self._positions

    def index(self, label: str) -> int:
        return self._positions[label]

    def length(self, label: str) -> int:
        return self.lengths[label]


class ICPTProcessor(ProcessorMixin):
    r"""
    Wraps a backbone's processor and adds personal concepts.

    For each concept the text gets a short preamble, `"<bo> is <icpt><icpt><icpt>."`, whose
    `<icpt>` slots the model fills with the concept's prompt rows; the number of slots is the
    concept's prompt length (from a `ConceptBank`, or `prompt_lengths` when raw references are given).
    The preamble opens the first user turn of a conversation, or the text.

    Concepts come as
    - `concepts=bank`: a `ConceptBank` from `model.encode_concepts` (inference: encode once, ask often);
      each text gets the slots of the concepts it names, or
    - `references={"<bo>": [img, ...], ...}` (or one such dict per sample): the reference images
      are processed here and encoded by the model inside its forward pass (training), or
    - neither, from a personalized checkpoint (saved with `model.save_pretrained(path, concepts=bank)`):
      `from_pretrained` reads its concepts into `self.concepts`, the default.

    Example:

    ```python
    >>> processor = ICPTProcessor.from_backbone("llava-hf/llava-1.5-7b-hf")  # doctest: +SKIP
    >>> refs = processor.prepare_references({"<bo>": ["bo1.jpg", "bo2.jpg"]})  # doctest: +SKIP
    >>> bank = model.encode_concepts(**refs)  # doctest: +SKIP
    >>> messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is <bo> in this photo?"}]}]
    >>> inputs = processor(messages=messages, images=[photo], concepts=bank)  # doctest: +SKIP
    ```
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, backbone_processor_config=None,
                 prompt_token="<icpt>", max_prompt_length=8, **kwargs):
        super().__init__(image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template)
        if prompt_token not in tokenizer.get_vocab():
            tokenizer.add_tokens([prompt_token], special_tokens=True)
        self.prompt_token = prompt_token
        self.max_prompt_length = max_prompt_length
        self.backbone_processor_config = backbone_processor_config or {}
        self.backbone_processor = build_backbone_processor(
            image_processor, tokenizer, self.backbone_processor_config, chat_template=chat_template
        )
        # a personalized checkpoint's concepts (see `from_pretrained`): the default when a call gives none
        self.concepts: ConceptSlots | None = None

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """The processor saved in a checkpoint, with the checkpoint's concepts (`self.concepts`) when it carries a bank."""
        processor = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        hub_kwargs = {k: kwargs[k] for k in HUB_KWARGS if k in kwargs}
        bank_file = cached_file(str(pretrained_model_name_or_path), BANK_FILENAME, **hub_kwargs,
                                _raise_exceptions_for_missing_entries=False)
        if bank_file is not None:
            processor.concepts = ConceptSlots.read(bank_file)
        return processor

    @classmethod
    def from_backbone(cls, name_or_path, prompt_token="<icpt>", max_prompt_length=8, **kwargs):
        """An ICPT processor around a backbone's saved processor (reserves the prompt token in its tokenizer)."""
        backbone = load_backbone_processor(name_or_path, **kwargs)
        return cls(
            image_processor=backbone.image_processor,
            tokenizer=backbone.tokenizer,
            chat_template=getattr(backbone, "chat_template", None),
            backbone_processor_config=backbone_processor_config(backbone),
            prompt_token=prompt_token,
            max_prompt_length=max_prompt_length,
        )

    @property
    def prompt_token_id(self) -> int:
        return self.tokenizer.convert_tokens_to_ids(self.prompt_token)

    # ---------------------------------------------------------------- references

    def prepare_references(self, references) -> BatchFeature:
        """
        Check and process reference images, ready for `model.encode_concepts(**output)`.

        Args:
            references: `{label: [image, ...]}`, or a list of `{"name": label, "references": [image, ...]}`
                (the episode format), optionally with `"masks": [mask, ...]` aligned with the references
                (non-zero = the concept). Images are PIL images, numpy arrays or file paths.

        Returns:
            `BatchFeature` with `reference_*` (the backbone image processor's output for all images,
            prefixed), `reference_concept_index` (which concept each image belongs to),
            `concept_name_ids` / `concept_name_mask` (the tokenized labels) and `concept_names`. Where
            masks are given, also `reference_background_*`: each masked reference with the concept painted
            out (its background-only view), with `reference_background_concept_index` / `_position`.
        """
        concepts = self._concept_list(references)
        return self._reference_features(concepts)

    def prepare_retrieval(self, images) -> BatchFeature:
        """
        Process query photos for `model.retrieve_concepts(bank, **output)`, which finds the bank's concepts each
        sample most likely shows (the "who is in this photo?" flow: nobody is named, retrieval chooses).

        Args:
            images: one image per sample, or one list of images per sample (PIL images, arrays or paths).

        Returns:
            `BatchFeature` with `retrieval_*` (the backbone image processor's output for all images, prefixed) and
            `retrieval_sample_index` (which sample each image belongs to).

        Example:

        ```python
        >>> retrieved = model.retrieve_concepts(bank, top_k=2, **processor.prepare_retrieval([photo]))  # doctest: +SKIP
        >>> retrieved  # doctest: +SKIP
        [['<bo>', '<kiki>']]
        ```
        """
        samples = images if isinstance(images, (list, tuple)) else [images]
        flat, sample_index = [], []
        for s, sample in enumerate(samples):
            for image in sample if isinstance(sample, (list, tuple)) else [sample]:
                flat.append(load_image(image, "query image"))
                sample_index.append(s)
        if not flat or len(set(sample_index)) != len(samples):
            raise ICPTInputError("prepare_retrieval needs at least one photo per sample: give one image (or a list) each.")
        with backbone_errors_as_input_errors():
            pixels = process_reference_images(self.backbone_processor, flat)
        data = {f"retrieval_{k}": v for k, v in pixels.items()}
        data["retrieval_sample_index"] = torch.tensor(sample_index, dtype=torch.long)
        return BatchFeature(data=data)

    def _concept_list(self, references) -> list[tuple[str, list, list | None]]:
        """`[(label, images, masks or None)]`, checked."""
        if isinstance(references, dict):
            concepts = [(label, images, None) for label, images in references.items()]
        elif isinstance(references, (list, tuple)):
            concepts = []
            for item in references:
                if not isinstance(item, dict) or "name" not in item or "references" not in item:
                    raise ICPTInputError(
                        f"Each concept must be a dict with 'name' and 'references', got {type(item).__name__}."
                    )
                masks = item.get("masks")
                if isinstance(masks, (list, tuple)) and not masks:
                    masks = None  # an empty list means no masks (the episode format's default)
                concepts.append((item["name"], item["references"], masks))
        else:
            raise ICPTInputError(
                f"references must be {{label: [images]}} or a list of {{'name', 'references'}}, got {type(references).__name__}."
            )
        if not concepts:
            raise ICPTInputError("No concepts given: pass at least one label with its reference images.")
        seen = set()
        for label, images, masks in concepts:
            self._check_label(label)
            if label in seen:
                raise ICPTInputError(f"The label {label!r} is given twice: each concept needs its own unique label.")
            seen.add(label)
            if images is None or (isinstance(images, (list, tuple)) and len(images) == 0):
                raise ICPTInputError(f"The concept {label!r} has zero reference images: give it at least one photo.")
            if not isinstance(images, (list, tuple)):
                raise ICPTInputError(f"The references of {label!r} must be a list of images, got one {type(images).__name__}.")
            if masks is not None and not isinstance(masks, (list, tuple)):
                raise ICPTInputError(f"The masks of {label!r} must be a list of images, one per reference, got {type(masks).__name__}.")
            if masks is not None and len(masks) != len(images):
                raise ICPTInputError(
                    f"The concept {label!r} has {len(images)} reference images but {len(masks)} masks: give one mask per image, or none."
                )
        return concepts

    def _check_label(self, label):
        if not isinstance(label, str) or not LABEL_PATTERN.fullmatch(label):
            raise ICPTInputError(
                f"Invalid concept label {label!r}: write labels as one word in angle brackets, like '<bo>'."
            )
        if label in self.tokenizer.all_special_tokens or label in self.tokenizer.get_added_vocab():
            raise ICPTInputError(
                f"The label {label!r} is a special token of the backbone's tokenizer: choose another name."
            )

    def _reference_features(self, concepts) -> BatchFeature:
        images, concept_index, backgrounds, background_index, background_position = [], [], [], [], []
        for c, (label, refs, masks) in enumerate(concepts):
            for i, ref in enumerate(refs):
                images.append(load_image(ref, f"reference image of {label}"))
                concept_index.append(c)
                if masks is not None:
                    backgrounds.append(background_view(images[-1], load_mask(masks[i], images[-1].size, label)))
                    background_index.append(c)
                    background_position.append(i)
        with backbone_errors_as_input_errors():
            pixels = process_reference_images(self.backbone_processor, images)
        names = [label for label, _, _ in concepts]
        tokens = self.tokenizer(names, add_special_tokens=False, padding=True, return_tensors="pt")
        data = {f"reference_{k}": v for k, v in pixels.items()}
        data["reference_concept_index"] = torch.tensor(concept_index, dtype=torch.long)
        if backgrounds:
            with backbone_errors_as_input_errors():
                views = process_reference_images(self.backbone_processor, backgrounds)
            data.update({f"reference_background_{k}": v for k, v in views.items()})
            data["reference_background_concept_index"] = torch.tensor(background_index, dtype=torch.long)
            data["reference_background_position"] = torch.tensor(background_position, dtype=torch.long)
        data["concept_name_ids"] = tokens["input_ids"]
        data["concept_name_mask"] = tokens["attention_mask"]
        features = BatchFeature(data=data)
        features["concept_names"] = names  # a list of strings: kept out of tensor conversion
        return features

    # ---------------------------------------------------------------- queries

    def __call__(self, text=None, images=None, messages=None, concepts=None, references=None, prompt_lengths=None,
                 add_generation_prompt=True, return_tensors="pt", retrieved=None, **kwargs) -> BatchFeature:
        """
        Process query text (or chat messages) and images, with each concept's prompt slots.

        Args:
            text: a string or a list of strings (one per sample), already in the backbone's prompt
                format, containing its image placeholders. Use `messages` to let the chat template format it.
            images: the query images; per sample a list (or `None` for text-only samples).
            messages: a conversation (list of `{"role", "content"}`) or a list of conversations, formatted
                with the backbone's chat template; `{"type": "image"}` parts mark where images go.
            concepts: a `ConceptBank`; each sample gets the bank's concepts that its text names, in bank order.
                Default: the concepts of a personalized checkpoint (`self.concepts`), when it has some.
            references: `{label: [images]}` for all samples, or a list with one such dict (or list of
                concepts, as `prepare_references` takes them) per sample; `[]` for a sample without concepts.
            prompt_lengths: with `references` only: slots per concept, an int or `{label: int}` (or one per
                sample); defaults to `max_prompt_length`.
            add_generation_prompt: with `messages`: end with the assistant's turn opener.
            retrieved: with `concepts`: labels of the bank that enter the prompt besides those the text names, one
                list per sample (or one list for all), as `model.retrieve_concepts` returns them; the user then
                asks "Who is in this photo?" without naming anyone.
            **kwargs: passed to the backbone's processor (e.g. `padding_side="left"`).

        Returns:
            `BatchFeature` with the backbone processor's outputs, `concept_names` (the concepts behind the
            slots), `prompt_concepts` (for each sample, the index in `concept_names` of the concept behind each
            run of slots, -1 padded), and with `references` the reference inputs of `prepare_references`. The
            model checks `concept_names` against the bank it is given.
        """
        texts, per_sample, concept_names, reference_inputs = self._prompt_texts(
            text, messages, concepts, references, prompt_lengths, add_generation_prompt, retrieved)
        batch_size = len(texts)
        if images is not None:
            images = [[load_image(im, "query image") for im in (sample or [])] if isinstance(sample, (list, tuple))
                      else [load_image(sample, "query image")] if sample is not None else []
                      for sample in (images if isinstance(images, (list, tuple)) else [images])]
            if len(images) != batch_size:
                raise ICPTInputError(f"Got {batch_size} texts but {len(images)} image lists: give one list per sample.")
            if all(len(sample) == 0 for sample in images):
                images = None
        with backbone_errors_as_input_errors():
            outputs = self.backbone_processor(text=texts, images=images, return_tensors=return_tensors, padding=True,
                                              **kwargs)
        most = max((len(sample) for sample in per_sample), default=0)
        prompt_concepts = torch.full((batch_size, max(most, 1)), -1, dtype=torch.long)
        for b, sample in enumerate(per_sample):
            for j, (_, index, _) in enumerate(sample):
                prompt_concepts[b, j] = index
        outputs["prompt_concepts"] = prompt_concepts
        if reference_inputs is not None:
            reference_inputs.pop("concept_names")
            outputs.update(reference_inputs)
        outputs["concept_names"] = concept_names  # a list of strings: kept out of tensor conversion
        return outputs

    def apply_chat_template(self, conversation, chat_template=None, add_generation_prompt=False,
                            continue_final_message=False, tokenize=False, return_dict=False, return_tensors="pt",
                            processor_kwargs=None, concepts=None, **kwargs):
        """
        Format a conversation (or a list of them) with the backbone's chat template, the preamble of each concept
        it names opening its first user turn. With `tokenize=True` (and `return_dict=True`), the processor's
        inputs as `__call__` returns them, the images taken from the messages' image parts
        (`{"type": "image", "image": PIL image, array or path}`): what `pipeline("image-text-to-text")` asks for.

        Example:

        ```python
        >>> messages = [{"role": "user", "content": [{"type": "image", "image": photo}, {"type": "text", "text": "Is <bo> here?"}]}]
        >>> inputs = processor.apply_chat_template(messages, tokenize=True, return_dict=True, add_generation_prompt=True)  # doctest: +SKIP
        ```
        """
        if chat_template is not None or continue_final_message or kwargs.get("tools") or kwargs.get("documents"):
            raise ICPTInputError(
                "ICPTProcessor.apply_chat_template uses the backbone's own chat template and does not continue a final "
                "assistant message or take tools or documents: pass the conversation alone."
            )
        if not isinstance(conversation, (list, tuple)):
            raise ICPTInputError(f"conversation must be a list of messages or a list of them, got {type(conversation).__name__}.")
        single = bool(conversation) and isinstance(conversation[0], dict)
        conversations = [conversation] if single else list(conversation)
        if not tokenize:
            texts = self._prompt_texts(None, conversations, concepts, None, None, add_generation_prompt)[0]
            return texts[0] if single else texts
        images = [_message_images(c) for c in conversations]
        inputs = self(messages=conversations, images=images if any(images) else None, concepts=concepts,
                      add_generation_prompt=add_generation_prompt, return_tensors=return_tensors, **(processor_kwargs or {}))
        return inputs if return_dict else inputs["input_ids"]

    def _prompt_texts(self, text, messages, concepts, references, prompt_lengths, add_generation_prompt, retrieved=None):
        """The texts to tokenize (preambles in place), and what `_sample_concepts` returns."""
        if (text is None) == (messages is None):
            raise ICPTInputError("Pass exactly one of text= or messages=.")
        if concepts is not None and references is not None:
            raise ICPTInputError("Pass concepts= (a ConceptBank) or references=, not both.")
        if messages is not None:
            if not isinstance(messages, (list, tuple)):
                raise ICPTInputError(f"messages must be a conversation (a list of messages) or a list of them, got {type(messages).__name__}.")
            conversations = [messages] if messages and isinstance(messages[0], dict) else list(messages)
            for conversation in conversations:
                _check_conversation(conversation)
            batch_size = len(conversations)
        else:
            texts = [text] if isinstance(text, str) else list(text) if isinstance(text, (list, tuple)) else [None]
            if not all(isinstance(t, str) for t in texts):
                raise ICPTInputError(f"text must be a string or a list of strings, got {type(text).__name__}.")
            batch_size = len(texts)
        if batch_size == 0:
            raise ICPTInputError("Nothing to process: give at least one text (or conversation).")
        if concepts is None and references is None:
            concepts = self.concepts
        sample_texts = [_message_texts(c) for c in conversations] if messages is not None else [[t] for t in texts]
        per_sample, concept_names, reference_inputs = self._sample_concepts(
            sample_texts, concepts, references, prompt_lengths, retrieved)
        for t, sample in zip(sample_texts, per_sample):
            self._check_mentions(t, sample)
        if messages is not None:
            texts = [
                self.tokenizer.apply_chat_template(
                    _with_preamble(conversation, self._preamble(sample)), tokenize=False,
                    add_generation_prompt=add_generation_prompt, chat_template=self.chat_template,
                )
                for conversation, sample in zip(conversations, per_sample)
            ]
        else:
            texts = [self._preamble(sample) + t for t, sample in zip(texts, per_sample)]
        return texts, per_sample, concept_names, reference_inputs

    def _sample_concepts(self, sample_texts, concepts, references, prompt_lengths, retrieved=None):
        """
        For each sample, its concepts as (label, index in `concept_names`, slot count); `concept_names`; and
        with `references` their processed reference inputs.
        """
        batch_size = len(sample_texts)
        if retrieved is not None and concepts is None:
            raise ICPTInputError("retrieved= names concepts of a bank: pass the bank as concepts= too.")
        if concepts is not None:
            if prompt_lengths is not None:
                raise ICPTInputError("prompt_lengths applies to references=; a ConceptBank carries its own lengths.")
            # (`lengths` is a property that builds a dict of the whole bank: ask only for the lookups used here)
            if not all(callable(getattr(concepts, name, None)) for name in ("index", "length", "__contains__")):
                raise ICPTInputError(f"concepts must be a ConceptBank (from model.encode_concepts), got {type(concepts).__name__}.")
            # only the concepts a text names (or retrieval chose) enter its prompt, looked up by label: a question
            # costs the slots and the time of those concepts, whatever the size of the bank
            wanted = [{m for t in texts for m in LABEL_PATTERN.findall(t)} for texts in sample_texts]
            for sample, extra in zip(wanted, self._retrieved_per_sample(retrieved, concepts, batch_size)):
                sample.update(extra)
            per_sample_labels = [sorted((label for label in sample if label in concepts), key=concepts.index)
                                 for sample in wanted]
            used = sorted({label for sample in per_sample_labels for label in sample}, key=concepts.index)
            position = {label: i for i, label in enumerate(used)}
            per_sample = [[(label, position[label], concepts.length(label)) for label in sample]
                          for sample in per_sample_labels]
            return per_sample, used, None
        if references is None:
            return [[] for _ in range(batch_size)], [], None
        if not isinstance(references, (dict, list, tuple)):
            raise ICPTInputError(f"references must be {{label: [images]}} or a list of them (one per sample), got {type(references).__name__}.")
        per_sample_refs = [references] * batch_size if isinstance(references, dict) else list(references)
        if len(per_sample_refs) != batch_size:
            raise ICPTInputError(f"Got {batch_size} samples but {len(per_sample_refs)} reference sets.")
        if isinstance(prompt_lengths, (list, tuple)):
            if len(prompt_lengths) != batch_size:
                raise ICPTInputError(f"Got {batch_size} samples but {len(prompt_lengths)} prompt_lengths entries.")
            per_sample_lengths = list(prompt_lengths)
        else:
            per_sample_lengths = [prompt_lengths] * batch_size
        if isinstance(references, dict):  # shared by all samples: encode each concept once
            shared = self._concept_list(references)
            flat, per_sample = shared, []
            for lengths in per_sample_lengths:
                per_sample.append([(label, i, self._slot_count(label, lengths)) for i, (label, _, _) in enumerate(shared)])
        else:
            flat, per_sample = [], []
            for refs, lengths in zip(per_sample_refs, per_sample_lengths):
                sample = []
                # a sample of a batch may have no concepts (an empty list): it gets no preamble
                for label, images, masks in self._concept_list(refs) if refs != [] else []:
                    sample.append((label, len(flat), self._slot_count(label, lengths)))
                    flat.append((label, images, masks))
                per_sample.append(sample)
            if not flat:
                return per_sample, [], None
        return per_sample, [label for label, _, _ in flat], self._reference_features(flat)

    @staticmethod
    def _retrieved_per_sample(retrieved, concepts, batch_size) -> list[list[str]]:
        """`retrieved` as one list of labels per sample, each checked against the bank."""
        if retrieved is None:
            return [[] for _ in range(batch_size)]
        if not isinstance(retrieved, (list, tuple)):
            raise ICPTInputError(f"retrieved must be a list of labels (or one list per sample), got {type(retrieved).__name__}.")
        if all(isinstance(label, str) for label in retrieved):
            retrieved = [list(retrieved)] * batch_size
        if len(retrieved) != batch_size or not all(isinstance(sample, (list, tuple)) for sample in retrieved):
            raise ICPTInputError(f"retrieved must hold one list of labels per sample ({batch_size}), got {retrieved!r:.80}.")
        unknown = sorted({label for sample in retrieved for label in sample if label not in concepts})
        if unknown:
            raise ICPTInputError(
                f"retrieved names {unknown[:5]}, which the bank does not hold: pass the bank the labels were retrieved from."
            )
        return retrieved

    def _slot_count(self, label, lengths):
        count = lengths.get(label, self.max_prompt_length) if isinstance(lengths, dict) else (lengths or self.max_prompt_length)
        if not 1 <= int(count) <= self.max_prompt_length:
            raise ICPTInputError(f"Prompt length {count} for {label!r} is outside 1..{self.max_prompt_length}.")
        return int(count)

    def _preamble(self, sample) -> str:
        if not sample:
            return ""
        return " ".join(f"{label} is {self.prompt_token * count}." for label, _, count in sample) + "\n"

    def _check_mentions(self, texts, sample):
        known = {label for label, _, _ in sample}
        special = set(self.tokenizer.all_special_tokens) | set(self.tokenizer.get_added_vocab())
        for t in texts:
            if self.prompt_token in t:
                raise ICPTInputError(
                    f"The text already contains the reserved prompt token {self.prompt_token!r}: "
                    "the processor inserts it; write only the concept labels."
                )
            for mention in LABEL_PATTERN.findall(t):
                if mention not in known and mention not in special:
                    raise ICPTInputError(
                        f"The text mentions {mention!r}, which is not among the given concepts {sorted(known)}: "
                        "add its reference images (or encode it into the ConceptBank) or fix the label."
                    )

    def batch_decode(self, *args, **kwargs):
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self.tokenizer.decode(*args, **kwargs)


def _check_conversation(conversation):
    """A conversation is a list of `{"role": str, "content": str | [{"type": ..., "text": str}, ...]}`."""
    if not isinstance(conversation, (list, tuple)) or not conversation:
        raise ICPTInputError(f"A conversation must be a non-empty list of messages, got {conversation!r:.80}.")
    for message in conversation:
        content = message.get("content") if isinstance(message, dict) else None
        parts = content if isinstance(content, (list, tuple)) else []
        if (not isinstance(message, dict) or not isinstance(message.get("role"), str)
                or not isinstance(content, (str, list, tuple))
                or not all(isinstance(part, dict) and isinstance(part.get("text", ""), str) for part in parts)):
            raise ICPTInputError(
                f"Each message must be {{'role': str, 'content': str or a list of {{'type': 'text', 'text': str}} / "
                f"{{'type': 'image'}} parts}}, got {message!r:.80}."
            )


def _message_texts(conversation) -> list[str]:
    texts = []
    for message in conversation:
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(part.get("text", "") for part in content if isinstance(part, dict))
    return texts


@contextmanager
def backbone_errors_as_input_errors():
    """The backbone's processor refuses bad input with a bare `ValueError`: pass it on as an `ICPTInputError`."""
    try:
        yield
    except ICPTInputError:
        raise
    except ValueError as error:
        raise ICPTInputError(f"The backbone's processor refused these inputs: {error}") from None


def _message_images(conversation) -> list:
    """The images of a conversation's image parts (`{"type": "image", "image": ...}`), in order."""
    images = []
    for message in conversation:
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, (list, tuple)) else []:
            if isinstance(part, dict) and part.get("type") == "image":
                image = next((part[key] for key in ("image", "path", "url") if part.get(key) is not None), None)
                if image is None:
                    raise ICPTInputError(
                        "An image part of the conversation carries no image: write {'type': 'image', 'image': photo}."
                    )
                images.append(image)
    return images


def _with_preamble(conversation, preamble):
    """A copy of the conversation whose first user turn opens with the concept preamble."""
    if not preamble:
        return conversation
    conversation = [dict(message) for message in conversation]
    for message in conversation:
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                message["content"] = preamble + content
            else:
                message["content"] = [{"type": "text", "text": preamble}] + list(content or [])
            return conversation
    raise ICPTInputError("The conversation has no user turn to carry the concepts.")


__all__ = ["ICPTProcessor", "ICPTInputError"]
