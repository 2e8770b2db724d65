"""ICPT: in-context prompt tuning for a frozen vision-language model.

Read top to bottom: the output type; the model (construction, saving and loading the projector
alone, encoding concepts, filling the prompt slots, forward, generate).

How prompts reach the frozen backbone: the processor writes, for each concept, its label followed
by `length` reserved `<icpt>` tokens ("<bo> is <icpt><icpt><icpt>."). Two hooks on the backbone's
input-embedding layer swap those tokens' embeddings for the projector's rows. `input_ids` keep their
length, so attention masks, image-token scatter, Qwen's M-RoPE positions and the KV cache are the
backbone's own, and `generate()` is the backbone's own `generate()`.

One model serves many threads: a call's rows never sit on the module. `forward()`/`generate()` put them
in a context variable (each thread and asyncio task sees its own), where the hooks find them.
"""

import math
import os
import weakref
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForImageTextToText, AutoTokenizer, GenerationMixin, PreTrainedModel
from safetensors.torch import load_file
from transformers.utils import ModelOutput, cached_file, is_peft_available

from .atomic_save import atomic_destination
from .concept_bank import BANK_FILENAME, ConceptBank, backbone_fingerprint
from .concept_losses import (
    environment_orthogonality_loss,
    pooled_descriptors,
    row_regression_loss,
    separation_loss,
    subset_invariance_loss,
)
from .concept_projector import ConceptProjector, prompt_lengths
from .concept_retrieval import concept_keys, image_keys
from .configuration_icpt import ICPTConfig
from .hub_io import push_to_hub, resolve_backbone, split_load_kwargs
from .input_checks import ICPTInputError
from .reference_features import (
    backbone_family,
    num_vision_layers,
    reference_features,
    text_hidden_size,
    vision_hidden_size,
)

if is_peft_available():
    from peft import LoraConfig, inject_adapter_in_model
    from peft.tuners.lora import LoraLayer

# keys of the processor's output that describe references rather than the query
REFERENCE_PREFIX = "reference_"
# the saved weights of the reader adapter: `reader_adapter.<name within the language model>`
READER_ADAPTER_PREFIX = "reader_adapter."
# keys of a training batch that carry identity targets and the references they are predicted from
TARGET_PREFIX = "target_"
# the prompt rows of the forward()/generate() running in this thread or task: (model, {"prompts", ...})
CALL_PROMPTS: ContextVar = ContextVar("icpt_call_prompts", default=None)


@dataclass
class ICPTOutput(ModelOutput):
    """
    Args:
        loss: total training loss, `lm_loss + decoupling_weight * decoupling_loss + separation_weight * separation_loss
            + identity_target_weight * identity_target_loss`.
        logits: the backbone's next-token logits.
        cache: the backbone's key/value cache.
        lm_loss: cross-entropy on answer tokens.
        decoupling_loss, separation_loss: the two regularizers (0 when not computed).
        identity_target_loss: relative squared error of the rows against identity targets (when the batch has them).
        prompt_lengths: prompt rows per concept, in the order of the encoded concepts.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    cache: object | None = None
    lm_loss: torch.FloatTensor | None = None
    decoupling_loss: torch.FloatTensor | None = None
    separation_loss: torch.FloatTensor | None = None
    identity_target_loss: torch.FloatTensor | None = None
    prompt_lengths: torch.LongTensor | None = None


def batched_complexity(patches: torch.Tensor, patch_mask: torch.Tensor) -> torch.Tensor:
    """
    `concept_complexity` of C concepts in one batched SVD: `patches` `(C, T, d)` padded, `patch_mask` `(C, T)` True
    where a patch is real. Padding rows are zero after centering, so they add no singular value.
    """
    features = patches.float()
    mask = patch_mask.unsqueeze(-1).to(features.dtype)
    count = mask.sum(1)  # (C, 1)
    centered = (features - (features * mask).sum(1, keepdim=True) / count.clamp_min(1).unsqueeze(1)) * mask
    energy = torch.linalg.svdvals(centered).pow(2)
    total = energy.sum(-1)
    max_rank = torch.clamp(torch.minimum(count.squeeze(-1), torch.tensor(float(features.shape[-1]))) - 1, min=0)
    p = energy / total.clamp_min(1e-30).unsqueeze(-1)
    entropy = -(p * torch.log(p.clamp_min(1e-30))).sum(-1)
    kappa = ((entropy.exp() - 1) / (max_rank - 1).clamp_min(1)).clamp(0, 1)
    flat = (max_rank < 1) | (total <= 1e-12 * (features * mask).pow(2).sum((1, 2)).clamp_min(1e-30))
    return torch.where(flat, torch.zeros_like(kappa), kappa)


class ICPTPreTrainedModel(PreTrainedModel):
    config_class = ICPTConfig
    base_model_prefix = "icpt"
    # the backbone's layers recompute their activations in the backward pass (gradients reach the rows through them)
    supports_gradient_checkpointing = True
    _supports_sdpa = True


class ICPTForConditionalGeneration(ICPTPreTrainedModel, GenerationMixin):
    """
    A frozen image-text-to-text backbone (`self.vlm`) plus a trainable concept projector.

    Example:

    ```python
    >>> from modeling_icpt import ICPTForConditionalGeneration
    >>> from processing_icpt import ICPTProcessor
    >>> processor = ICPTProcessor.from_pretrained("path/to/icpt-checkpoint")  # doctest: +SKIP
    >>> model = ICPTForConditionalGeneration.from_pretrained("path/to/icpt-checkpoint")  # doctest: +SKIP
    >>> bank = model.encode_concepts(**processor.prepare_references({"<bo>": ["bo1.jpg", "bo2.jpg"]}))  # doctest: +SKIP
    >>> messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is <bo> here?"}]}]
    >>> inputs = processor(messages=messages, images=[query_photo], concepts=bank)  # doctest: +SKIP
    >>> answer = model.generate(**inputs, concepts=bank, max_new_tokens=20)  # doctest: +SKIP
    ```
    """

    def __init__(self, config: ICPTConfig, vlm: PreTrainedModel | None = None):
        super().__init__(config)
        if vlm is None:
            raise ValueError(
                "ICPTForConditionalGeneration wraps a backbone: build one with "
                "ICPTForConditionalGeneration.from_backbone(name_or_model) or load a checkpoint with from_pretrained(path)."
            )
        if config.prompt_token_id is None:
            raise ValueError("config.prompt_token_id is not set: build the model with from_backbone(...).")
        self.vlm = vlm
        # the ICPT models wrapping this backbone object: a reader adapter may only go into an unshared one
        if not hasattr(vlm, "_icpt_models"):
            vlm._icpt_models = weakref.WeakSet()
        vlm._icpt_models.add(self)
        self.vlm.requires_grad_(False)
        self.vlm.eval()
        self.projector = ConceptProjector(config).to(self.vlm.get_input_embeddings().weight.device)
        self.generation_config = vlm.generation_config
        # which embedding space this model's rows live in; banks record it (fixed: the backbone is frozen)
        self.backbone_fingerprint = backbone_fingerprint(vlm)
        # the concepts a personalized checkpoint carries: used when a call names concepts but passes none
        self.concepts: ConceptBank | None = None
        embeddings = self.vlm.get_input_embeddings()
        embeddings.register_forward_pre_hook(self._hide_prompt_slots)
        embeddings.register_forward_hook(self._fill_prompt_slots)
        self.post_init()
        if config.reader_lora_rank > 0:  # after post_init, which would re-initialize the adapter's zero start
            self._inject_reader_adapter()
        elif self._carries_an_adapter():
            raise ICPTInputError(
                "The backbone object given carries another ICPT model's reader adapter, so this model would read "
                "through it: give this checkpoint its own backbone (a path, or a freshly loaded model)."
            )

    # ---------------------------------------------------------------- the reader adapter

    def add_reader_adapter(self, rank: int = 16, alpha: float = 32.0, modules=None) -> None:
        """
        Add a fresh LoRA adapter to the backbone's language model, to be trained with the projector (a model
        that reads the rows better; docs/method.md). It starts as the identity: answers do not change until it
        trains. `save_pretrained` then writes it beside the projector, and `from_pretrained` restores both.

        Example:

        ```python
        >>> model = ICPTForConditionalGeneration.from_pretrained("icpt/default/projector")  # doctest: +SKIP
        >>> model.add_reader_adapter(rank=16)  # doctest: +SKIP
        >>> sum(p.numel() for p in model.parameters() if p.requires_grad)  # projector + adapter  # doctest: +SKIP
        ```
        """
        if self.config.reader_lora_rank > 0:
            raise ICPTInputError(f"This model already has a reader adapter (rank {self.config.reader_lora_rank}).")
        self.config.reader_lora_rank, self.config.reader_lora_alpha = int(rank), float(alpha)
        if modules is not None:
            self.config.reader_lora_modules = list(modules)
        self.config.__post_init__()  # the config's own checks
        self._inject_reader_adapter()

    def trained_state_dict(self, state_dict=None) -> dict[str, torch.Tensor]:
        """
        What ICPT trains and saves: the projector (`projector.*`) and the reader adapter, named within the
        language model (`reader_adapter.*`, so that no backbone's own key renaming applies to it).

        Args:
            state_dict: the model's full state dict, when one is given (Trainer under FSDP gathers one).
        """
        state_dict = self.state_dict() if state_dict is None else state_dict
        reader = self._language_model_prefix()
        trained = {}
        for key, value in state_dict.items():
            if key.startswith("projector."):
                trained[key] = value
            elif ".lora_" in key and key.startswith(reader):
                trained[READER_ADAPTER_PREFIX + key[len(reader):]] = value
        return trained

    def load_trained_state_dict(self, state_dict) -> None:
        """Load what `trained_state_dict` returns (the backbone's own weights stay as they are)."""
        reader = self._language_model_prefix()
        names = {key: reader + key[len(READER_ADAPTER_PREFIX):] if key.startswith(READER_ADAPTER_PREFIX) else key
                 for key in state_dict}
        state_dict = {names[key]: value for key, value in state_dict.items()}
        if state_dict.get("projector.log_row_norm", torch.zeros(1)).dim() == 0:  # saved before it became shape (1,)
            state_dict["projector.log_row_norm"] = state_dict["projector.log_row_norm"].reshape(1)
        self._fold_reader_adapter(False)  # take out the adapter being replaced before its weights change
        self.load_state_dict(state_dict, strict=False)
        self._fold_reader_adapter(not self.training)

    def _language_model_prefix(self) -> str:
        language_model = self.vlm.get_decoder()
        return next(name for name, module in self.named_modules() if module is language_model) + "."

    def _carries_an_adapter(self) -> bool:
        return any(".lora_" in name for name, _ in self.vlm.get_decoder().named_parameters())

    def _inject_reader_adapter(self) -> None:
        if not is_peft_available():
            raise ImportError("This ICPT checkpoint carries a reader adapter (LoRA), which needs PEFT: pip install peft.")
        if self._carries_an_adapter() or any(other is not self for other in self.vlm._icpt_models):
            raise ICPTInputError(
                "The backbone object is shared with another ICPT model, which would then read through this "
                "model's reader adapter (or it already carries one): give each checkpoint with a reader adapter "
                "its own backbone (a path, or a freshly loaded model)."
            )
        config = self.config
        lora = LoraConfig(r=config.reader_lora_rank, lora_alpha=config.reader_lora_alpha,
                          target_modules=list(config.reader_lora_modules), lora_dropout=0.0)
        inject_adapter_in_model(lora, self.vlm.get_decoder())
        for name, parameter in self.vlm.named_parameters():
            parameter.requires_grad_(".lora_" in name)
        self._fold_reader_adapter(not self.training)

    def _fold_reader_adapter(self, folded: bool) -> None:
        """Fold the reader adapter into the language model's weights (PEFT's `merge`) or take it out again.

        In eval mode it is folded: each adapted projection is then one matrix product, as in the plain backbone,
        instead of three (the adapter's cost on every generated token). In train mode it is not, so that it
        learns. Folding and taking out round the backbone's weights in memory once each (the backbone's files
        are never written), and in eval mode the adapter gets no gradients: train it in train mode.
        """
        if self.config.reader_lora_rank == 0:
            return
        for layer in self.vlm.get_decoder().modules():
            if isinstance(layer, LoraLayer) and layer.merged != folded:
                layer.merge() if folded else layer.unmerge()

    # ---------------------------------------------------------------- construction

    @classmethod
    def from_backbone(cls, backbone, prompt_token_id: int | None = None, **config_overrides):
        """
        A fresh, untrained projector around a backbone (the counterpart of PEFT's `get_peft_model`).

        Args:
            backbone: a Hub id or local path of an `AutoModelForImageTextToText` checkpoint, or a loaded model.
            prompt_token_id: id of the reserved prompt token in the backbone's tokenizer; found by
                reserving the token in the backbone's tokenizer when `backbone` is a path. Pass
                `ICPTProcessor.prompt_token_id` when `backbone` is a model object.
            **config_overrides: any `ICPTConfig` field (e.g. `max_prompt_length=8`), plus `dtype`.
        """
        dtype = config_overrides.pop("dtype", None)
        prompt_token = config_overrides.get("prompt_token", ICPTConfig.prompt_token)
        if isinstance(backbone, (str, os.PathLike)):
            name = str(backbone)
            vlm = AutoModelForImageTextToText.from_pretrained(name, dtype=dtype)
            if prompt_token_id is None:
                tokenizer = AutoTokenizer.from_pretrained(name)
                tokenizer.add_tokens([prompt_token], special_tokens=True)
                prompt_token_id = tokenizer.convert_tokens_to_ids(prompt_token)
        else:
            vlm, name = backbone, backbone.config.name_or_path or None
            if prompt_token_id is None:
                raise ValueError("from_backbone(model) needs prompt_token_id=processor.prompt_token_id.")
        vlm_config = vlm.config
        depth = num_vision_layers(vlm_config)
        embedding_norms = vlm.get_input_embeddings().weight.detach().float().norm(dim=-1)
        config = ICPTConfig(
            base_model_name_or_path=name,
            backbone_model_type=backbone_family(vlm_config),
            text_hidden_size=text_hidden_size(vlm_config),
            vision_hidden_size=vision_hidden_size(vlm_config),
            vision_layers=config_overrides.pop("vision_layers", [depth // 2, -1] if depth >= 2 else [-1]),
            prompt_norm=float(embedding_norms.median()),
            prompt_token_id=prompt_token_id,
            **config_overrides,
        )
        return cls(config, vlm)

    def train(self, mode: bool = True):
        # the backbone is frozen: keep its dropout off even while the projector trains
        super().train(mode)
        self.vlm.eval()
        # a reader adapter reads folded into the weights for inference, apart while it trains
        self._fold_reader_adapter(not mode)
        return self

    # ---------------------------------------------------------------- projector-only checkpoints

    def save_pretrained(self, save_directory, concepts: ConceptBank | None = None, **kwargs):
        """Write the projector's weights (and the reader adapter's, if any), `config.json` and the code files --
        never the backbone.

        With `concepts`, the folder also holds that bank (`concept_bank.safetensors`): a personalized
        checkpoint, whose concepts `from_pretrained` loads as `model.concepts` and `ICPTProcessor.from_pretrained`
        as `processor.concepts`, so that questions naming them need no bank argument (e.g. in a `pipeline`).

        A local backbone is recorded relative to `save_directory`, so the checkpoint loads from any working
        directory. Everything is written to a temporary folder next to the destination, then renamed into
        place (the whole folder when it is new, each file otherwise), so an interrupted save never leaves a
        half-written weights file.

        Example:

        ```python
        >>> model.save_pretrained("my-assistant", concepts=bank); processor.save_pretrained("my-assistant")  # doctest: +SKIP
        ```
        """
        save_directory = Path(save_directory)
        if kwargs.get("push_to_hub"):
            raise ValueError("Use model.push_to_hub(repo_id): it uploads the projector and then writes the ICPT model card.")
        concepts = concepts if concepts is not None else self.concepts
        if concepts is not None:
            self._check_bank(concepts)
        # a state_dict handed in (Trainer under FSDP/DeepSpeed gathers one) is filtered the same way
        state_dict = self.trained_state_dict(kwargs.pop("state_dict", None))
        backbone = self.config.base_model_name_or_path
        if self._auto_class is not None:  # remote code: both Auto classes a user may reach for load the model
            name = f"{type(self).__module__.split('.')[-1]}.{type(self).__name__}"
            self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), "AutoModel": name,
                                    "AutoModelForImageTextToText": name}
        if backbone and Path(backbone).is_absolute():
            self.config.base_model_name_or_path = os.path.relpath(backbone, save_directory.resolve())
        try:
            with atomic_destination(save_directory, directory=True) as staging:
                super().save_pretrained(staging, state_dict=state_dict, **kwargs)
                if concepts is not None:
                    concepts.save(staging / BANK_FILENAME)
        finally:
            self.config.base_model_name_or_path = backbone

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, config=None, backbone=None, **kwargs):
        """
        Load the backbone named in the checkpoint's config (or the one given as `backbone`: a path, a Hub id or
        a loaded model), then the projector and, when the checkpoint has one, the reader adapter, and the
        checkpoint's concepts (`model.concepts`) when it carries a bank. A reader adapter is added to the
        backbone's language model: give each such checkpoint its own backbone, never one shared with another model.

        Keyword arguments such as `dtype`, `device_map` or `attn_implementation` go to the backbone's
        `from_pretrained` (the projector follows the backbone's dtype); `cache_dir`, `token`, `local_files_only`,
        ... are used for both; `revision` and `subfolder` for the checkpoint only. The checkpoint names its
        backbone by Hub id or by a path relative to its own folder (never to the working directory).

        The model comes in eval mode, as transformers' models do (a reader adapter then reads folded into the
        language model's weights): call `model.train()` to train it further.
        """
        path = str(pretrained_model_name_or_path)
        checkpoint_kwargs, hub_kwargs = split_load_kwargs(kwargs)
        if not isinstance(config, ICPTConfig):
            config = ICPTConfig.from_pretrained(path, **hub_kwargs, **checkpoint_kwargs)
        if backbone is None or isinstance(backbone, (str, os.PathLike)):
            folder = Path(path, checkpoint_kwargs.get("subfolder", ""))
            name = resolve_backbone(config.base_model_name_or_path, folder, path) if backbone is None else str(backbone)
            backbone = AutoModelForImageTextToText.from_pretrained(name, **hub_kwargs, **kwargs)
        else:  # a loaded model: the checkpoint now names the backbone it wraps (re-saving records that one)
            name = backbone.config.name_or_path or config.base_model_name_or_path
        # a local folder is recorded absolute (save_pretrained writes it relative to where it saves)
        config.base_model_name_or_path = str(Path(name).resolve()) if name and Path(name).is_dir() else name
        width = text_hidden_size(backbone.config)
        if width != config.text_hidden_size:
            raise ICPTInputError(
                f"The projector in {path} was trained for a backbone with {config.text_hidden_size}-wide embeddings, "
                f"but {backbone.config.name_or_path or 'the given backbone'} has {width}: load it with the backbone it was trained for "
                f"({config.base_model_name_or_path})."
            )
        model = cls(config, backbone)
        weights_file = cached_file(path, "model.safetensors", **hub_kwargs, **checkpoint_kwargs)
        state_dict = load_file(weights_file)
        expected = set(model.trained_state_dict())
        missing, unexpected = sorted(expected - state_dict.keys()), sorted(state_dict.keys() - expected)
        if missing or unexpected:
            raise ICPTInputError(
                f"The checkpoint {path} does not match this projector: missing keys {missing[:8]}"
                f"{' ...' if len(missing) > 8 else ''}, unexpected keys {unexpected[:8]}. "
                "It was saved by a different ICPT configuration or is corrupt; re-save it with save_pretrained."
            )
        model.load_trained_state_dict(state_dict)
        embeddings = backbone.get_input_embeddings().weight
        model.projector.to(device=embeddings.device, dtype=embeddings.dtype)
        bank_file = cached_file(path, BANK_FILENAME, **hub_kwargs, **checkpoint_kwargs,
                                _raise_exceptions_for_missing_entries=False)
        if bank_file is not None:
            model.concepts = ConceptBank.load(bank_file)
            model._check_bank(model.concepts)
        return model.eval()

    def push_to_hub(self, repo_id, *, processor=None, concepts: ConceptBank | None = None, card=None, **kwargs):
        """
        Upload the projector-only repository (weights, `config.json`, code files, and the processor's files
        when `processor` is given) in one commit, then the model card in a second.

        Args:
            repo_id: `"namespace/name"` (or `"name"` for the token's own namespace).
            processor: the `ICPTProcessor` to ship with the projector, so that
                `AutoProcessor.from_pretrained(repo_id, trust_remote_code=True)` works.
            concepts: a `ConceptBank` to ship in the same repository (a personalized checkpoint, see
                `save_pretrained`); by default the model's own `concepts`, if any.
            card: a `huggingface_hub.ModelCard`, or a function `full_repo_id -> ModelCard` (e.g. ICPT's projector
                card, `icpt.cards.card_for(model)`); by default no card.
            **kwargs: `commit_message`, `commit_description`, `private`, `token`, `revision`, `create_pr`.

        Returns:
            The `huggingface_hub.CommitInfo` of the upload.

        Example:

        ```python
        >>> from icpt.cards import card_for
        >>> model.push_to_hub("me/icpt-qwen2.5-vl-3b", processor=processor, card=card_for(model))  # doctest: +SKIP
        >>> model = AutoModelForImageTextToText.from_pretrained("me/icpt-qwen2.5-vl-3b", trust_remote_code=True)  # doctest: +SKIP
        ```
        """
        def save(folder):
            self.save_pretrained(folder, concepts=concepts)
            if processor is not None:
                processor.save_pretrained(folder)

        return push_to_hub(save, repo_id, card, what="push_to_hub", default_message="Upload ICPT projector", **kwargs)

    # ---------------------------------------------------------------- encoding concepts

    def _encode(self, concept_name_ids, concept_name_mask, reference_concept_index, **image_inputs):
        """Run the frozen vision tower and the projector on every reference; no length rule yet.

        Returns the projector's rows `(C, max_prompt_length, d_lm)`, the projector's padded inputs
        (the regularizers re-run it on subsets of references and on background-only views) and
        each concept's complexity.
        """
        background_inputs = {k[len("background_"):]: image_inputs.pop(k) for k in list(image_inputs)
                             if k.startswith("background_")}
        features = reference_features(self.vlm, image_inputs, self.config.vision_layers)
        per_concept = [[] for _ in range(concept_name_ids.shape[0])]
        for feature, concept in zip(features, reference_concept_index.tolist()):
            per_concept[concept].append(feature)
        if any(len(refs) == 0 for refs in per_concept):
            raise ICPTInputError("Every concept needs at least one reference image.")
        if max(len(refs) for refs in per_concept) > self.config.max_references:
            raise ICPTInputError(
                f"A concept has more than {self.config.max_references} reference images (config.max_references)."
            )
        device = self.projector.queries.device
        name_embeddings = self.vlm.get_input_embeddings()(concept_name_ids.to(device)).float()
        name_mask = concept_name_mask.to(device).unsqueeze(-1).float()
        name_embeddings = (name_embeddings * name_mask).sum(1) / name_mask.sum(1).clamp_min(1)
        inputs = self._projector_inputs(per_concept, name_embeddings)
        if background_inputs:
            # background-only view j shows the environment of reference `position[j]` of concept `concept[j]`
            concept, position = background_inputs.pop("concept_index"), background_inputs.pop("position")
            concept, position = concept.to(device), position.to(device)
            views = reference_features(self.vlm, background_inputs, self.config.vision_layers)
            view_inputs = self._projector_inputs([[v] for v in views], name_embeddings[concept])
            view_inputs["reference_index"] = position[:, None].expand_as(view_inputs["reference_index"])
            inputs["background"] = (view_inputs, concept, position)
        complexity = self._complexity(inputs["patch_features"], inputs["patch_mask"])
        projector_inputs = {k: v for k, v in inputs.items() if k != "background"}
        return self.projector(**projector_inputs), inputs, complexity.to(device)

    def _complexity(self, patches, patch_mask):
        """Each concept's visual complexity, all concepts at once; NaN (not measured) when it cannot change the length."""
        config = self.config
        if not config.adaptive_length or config.min_prompt_length == config.max_prompt_length:
            # every concept gets max_prompt_length whatever its complexity: skip the SVD
            return torch.full((patches.shape[0],), float("nan"), device=patches.device)
        return batched_complexity(patches, patch_mask)

    def _projector_inputs(self, per_concept, name_embeddings):
        """Pad each concept's patches (all its references, one after another) into the projector's inputs."""
        device = self.projector.queries.device
        length = max(sum(f.shape[0] for f in refs) for refs in per_concept)
        patches = per_concept[0][0].new_zeros(len(per_concept), length, per_concept[0][0].shape[-1])
        patch_mask = torch.zeros(len(per_concept), length, dtype=torch.bool, device=patches.device)
        reference_index = torch.zeros(len(per_concept), length, dtype=torch.long, device=patches.device)
        for c, refs in enumerate(per_concept):
            start = 0
            for i, feature in enumerate(refs):
                end = start + feature.shape[0]
                patches[c, start:end], patch_mask[c, start:end], reference_index[c, start:end] = feature, True, i
                start = end
        return {
            "patch_features": patches.to(device),
            "patch_mask": patch_mask.to(device),
            "reference_index": reference_index.to(device),
            "name_embeddings": name_embeddings,
        }

    @torch.no_grad()
    def image_token_embeddings(self, **backbone_inputs) -> list[torch.Tensor]:
        """
        What the language model receives in place of the photos: per sequence, the `(tokens, d_lm)` input
        embeddings at the backbone's image-token positions (its projected image features).

        Args:
            backbone_inputs: the processor's output for text with images and no concepts.

        Example:

        ```python
        >>> messages = [{"role": "user", "content": [{"type": "image"}]}]
        >>> [t.shape for t in model.image_token_embeddings(**processor(messages=[messages], images=[[im]]))]  # doctest: +SKIP
        [torch.Size([16, 256])]
        ```
        """
        image_token_id = getattr(self.vlm.config, "image_token_id", None)
        input_ids = backbone_inputs.get("input_ids")
        if image_token_id is None or input_ids is None or not (input_ids == image_token_id).any():
            raise ICPTInputError(
                "image_token_embeddings needs the processor's output for text with at least one image "
                f"(input_ids holding the backbone's image token {image_token_id})."
            )
        backbone_inputs = {k: v for k, v in backbone_inputs.items() if k not in ("prompt_concepts", "concept_names", "labels")}
        hidden = self.vlm(**backbone_inputs, output_hidden_states=True).hidden_states[0]  # the LM's input embeddings
        is_image = input_ids.to(hidden.device) == image_token_id
        return [hidden[b][is_image[b]] for b in range(hidden.shape[0])]

    def set_prompt_norm(self, norm: float) -> None:
        """Starts every prompt row at L2 norm `norm` (the projector's learned scale and `config.prompt_norm`)."""
        if not norm > 0:
            raise ValueError(f"The prompt norm must be positive, got {norm}.")
        self.config.prompt_norm = float(norm)
        with torch.no_grad():
            self.projector.log_row_norm.fill_(math.log(norm))

    def match_image_token_norm(self, **backbone_inputs) -> float:
        """
        Start the prompt rows at the norm of the backbone's own image tokens, and return that norm.

        Prompt rows stand where photos of the concept would otherwise stand in the prompt, and a
        backbone's projected image tokens can be one or two orders of magnitude longer than its word
        embeddings (the default start, `prompt_norm`). A learned scale moves too slowly to cross that gap,
        so a fresh projector is started at the median image-token norm measured on a few images.

        Args:
            backbone_inputs: the processor's output for text with images and no concepts.

        Example:

        ```python
        >>> messages = [{"role": "user", "content": [{"type": "image"}]}]
        >>> model.match_image_token_norm(**processor(messages=[messages] * 4, images=[[im] for im in photos]))  # doctest: +SKIP
        17.2
        ```
        """
        tokens = torch.cat(self.image_token_embeddings(**backbone_inputs))
        norm = float(tokens.float().norm(dim=-1).median())
        self.set_prompt_norm(norm)
        return norm

    @torch.no_grad()
    def encode_concepts(self, concept_names, concept_name_ids, concept_name_mask, reference_concept_index,
                        **image_inputs) -> ConceptBank:
        """
        Encode concepts once, from the processor's `prepare_references(...)` output, into a `ConceptBank`.

        Example:

        ```python
        >>> bank = model.encode_concepts(**processor.prepare_references({"<bo>": [img1, img2], "<kiki>": [img3]}))  # doctest: +SKIP
        >>> bank.lengths  # doctest: +SKIP
        {'<bo>': 6, '<kiki>': 3}
        ```
        """
        image_inputs = {k[len(REFERENCE_PREFIX):]: v for k, v in image_inputs.items() if k.startswith(REFERENCE_PREFIX)}
        rows, inputs, complexity = self._encode(concept_name_ids, concept_name_mask, reference_concept_index,
                                                **image_inputs)
        lengths = prompt_lengths(complexity.nan_to_num(), self.config)  # NaN: not measured, the length is fixed
        used = (torch.arange(rows.shape[1], device=rows.device) < lengths[:, None].to(rows.device)).unsqueeze(-1)
        descriptors = (rows * used).sum(1) / used.sum(1)
        # what retrieval compares a query photo with (half precision: it only ranks)
        keys = concept_keys(inputs["patch_features"], inputs["patch_mask"], self.config.vision_hidden_size).half()
        return ConceptBank(concept_names, rows, lengths, complexity, descriptors, self.config.base_model_name_or_path,
                           self.backbone_fingerprint, keys)

    @torch.no_grad()
    def retrieve_concepts(self, concepts: ConceptBank, top_k: int = 5, return_scores: bool = False,
                          retrieval_sample_index=None, **retrieval_inputs):
        """
        The `top_k` concepts of a bank that each query photo most likely shows, best first (the retrieval step of
        RAP): the photo's pooled vision features against each concept's retrieval key (see `concept_retrieval`).

        Args:
            concepts: the `ConceptBank` to search.
            top_k: concepts per sample.
            return_scores: also return the `(samples, top_k)` cosine similarities.
            retrieval_sample_index, **retrieval_inputs: the processor's `prepare_retrieval(images)` output; a sample
                with several photos is searched with the mean of their keys.

        Returns:
            One list of labels per sample (and the scores); pass it to the processor as `retrieved=`.

        Example:

        ```python
        >>> retrieved = model.retrieve_concepts(bank, top_k=2, **processor.prepare_retrieval([photo]))  # doctest: +SKIP
        >>> inputs = processor(messages=[who_is_here], images=[[photo]], concepts=bank, retrieved=retrieved)  # doctest: +SKIP
        >>> model.generate(**inputs, concepts=bank, max_new_tokens=20)  # doctest: +SKIP
        ```
        """
        self._check_bank(concepts)
        image_inputs = {k[len("retrieval_"):]: v for k, v in retrieval_inputs.items() if k.startswith("retrieval_")}
        if not image_inputs or retrieval_sample_index is None:
            raise ICPTInputError("retrieve_concepts needs photos: pass **processor.prepare_retrieval(images).")
        features = reference_features(self.vlm, image_inputs, self.config.vision_layers)
        keys = image_keys(features, self.config.vision_hidden_size)
        samples = int(retrieval_sample_index.max()) + 1
        pooled = keys.new_zeros(samples, keys.shape[1]).index_add_(0, retrieval_sample_index.to(keys.device), keys)
        return concepts.retrieve(torch.nn.functional.normalize(pooled, dim=-1), top_k, return_scores)

    # ---------------------------------------------------------------- filling the prompt slots

    def _slot_rows(self, input_ids, prompts, prompt_concepts, lengths=None):
        """The rows for every prompt slot of `input_ids`, in row-major order.

        Each run of consecutive slot tokens in a sequence is one concept occurrence; the j-th run of
        sequence b takes its rows from concept `prompt_concepts[b, j]`, first row first. With `lengths`
        (a bank's prompt length per concept), every run must be exactly its concept's length.
        """
        is_slot = input_ids == self.config.prompt_token_id
        if prompt_concepts is None:
            raise ICPTInputError("input_ids contain ICPT prompt slots but no prompt_concepts: build inputs with ICPTProcessor.")
        if prompt_concepts.shape[0] != input_ids.shape[0]:
            # generate() repeats each sequence for beams / num_return_sequences
            prompt_concepts = prompt_concepts.repeat_interleave(input_ids.shape[0] // prompt_concepts.shape[0], dim=0)
        prompt_concepts = prompt_concepts.to(input_ids.device)
        previous = torch.nn.functional.pad(is_slot[:, :-1], (1, 0), value=False)
        starts = is_slot & ~previous
        run = starts.long().cumsum(dim=1) - 1
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
        offset = positions - torch.where(starts, positions, 0).cummax(dim=1).values
        runs_per_sequence = starts.sum(dim=1)
        concepts_per_sequence = (prompt_concepts >= 0).sum(dim=1)
        if not torch.equal(runs_per_sequence, concepts_per_sequence):
            raise ICPTInputError(
                f"Each sequence has {runs_per_sequence.tolist()} runs of prompt slots but prompt_concepts names "
                f"{concepts_per_sequence.tolist()} concepts: build text and prompt_concepts with the same ICPTProcessor call."
            )
        if is_slot.any() and int(offset[is_slot].max()) >= prompts.shape[1]:
            raise ICPTInputError(f"A concept has more prompt slots than its {prompts.shape[1]} prompt rows.")
        concept = prompt_concepts.gather(1, run.clamp_min(0))
        if is_slot.any() and int(concept[is_slot].max()) >= prompts.shape[0]:
            raise ICPTInputError(f"prompt_concepts refers to concept {int(concept[is_slot].max())} of only {prompts.shape[0]}.")
        if lengths is not None and is_slot.any():
            lengths = lengths.to(input_ids.device)
            expected = torch.where(prompt_concepts >= 0, lengths[prompt_concepts.clamp_min(0)], 0).sum(dim=1)
            too_long = bool((offset[is_slot] >= lengths[concept[is_slot]]).any())
            if too_long or not torch.equal(is_slot.sum(dim=1), expected):
                raise ICPTInputError(
                    "The inputs' prompt slots do not match the lengths of these concepts in the given bank: the inputs "
                    "were built with another bank. Pass the same bank to the processor and to the model."
                )
        return prompts[concept[is_slot], offset[is_slot]]

    def _hide_prompt_slots(self, module, args):
        call = CALL_PROMPTS.get()
        if call is None or call[0] is not self:
            return None
        input_ids = args[0]
        call[1]["input_ids"] = input_ids
        # the reserved token may lie beyond the backbone's vocabulary: look up a real token in its place
        return (input_ids.masked_fill(input_ids == self.config.prompt_token_id, 0),) + tuple(args[1:])

    def _fill_prompt_slots(self, module, args, output):
        call = CALL_PROMPTS.get()
        if call is None or call[0] is not self:
            return None
        injection = call[1]
        input_ids = injection["input_ids"]
        is_slot = input_ids == self.config.prompt_token_id
        if not is_slot.any():  # decoding steps after the first see only new tokens
            return None
        rows = self._slot_rows(input_ids, injection["prompts"], injection["prompt_concepts"])
        output = output.clone()
        output[is_slot] = rows.to(output.dtype)
        return output

    @contextmanager
    def _prompts_injected(self, input_ids, prompts, prompt_concepts, lengths=None):
        if input_ids is not None:
            self._check_prompt_fits(input_ids.shape[-1])
        if input_ids is not None and (input_ids == self.config.prompt_token_id).any():
            if prompts is None:
                raise ICPTInputError(
                    "input_ids contain ICPT prompt slots but no concepts were given: pass concepts=bank "
                    "(from model.encode_concepts) or the reference inputs the processor returned."
                )
            self._slot_rows(input_ids, prompts, prompt_concepts, lengths)  # validate before the backbone runs
        # this call's rows, seen only by hooks running in this thread / task
        token = CALL_PROMPTS.set((self, {"prompts": prompts, "prompt_concepts": prompt_concepts, "input_ids": None}))
        try:
            yield
        finally:
            CALL_PROMPTS.reset(token)

    def _check_prompt_fits(self, prompt_length: int, new_tokens: int = 0) -> None:
        limit = getattr(self.vlm.config.get_text_config(), "max_position_embeddings", None)
        if limit is not None and prompt_length + new_tokens > limit:
            more = f" plus {new_tokens} new tokens" if new_tokens else ""
            raise ICPTInputError(
                f"The prompt is {prompt_length} tokens{more}, but the backbone reads at most {limit} positions: "
                "ask with fewer concepts or images, a shorter text, or fewer max_new_tokens."
            )

    def _check_bank(self, bank: ConceptBank) -> None:
        """A bank must hold rows of this backbone's embedding space."""
        if not isinstance(bank, ConceptBank):
            raise ICPTInputError(f"concepts must be a ConceptBank (from model.encode_concepts), got {type(bank).__name__}.")
        if bank.hidden_size != self.config.text_hidden_size:
            raise ICPTInputError(
                f"This ConceptBank holds {bank.hidden_size}-wide prompts but the backbone's embeddings are "
                f"{self.config.text_hidden_size} wide: it was made for another backbone; re-encode the concepts with this model."
            )
        if bank.backbone_fingerprint != self.backbone_fingerprint:
            raise ICPTInputError(
                f"This ConceptBank was made for another backbone ({bank.base_model_name_or_path or 'not recorded'}; "
                f"this model's is {self.config.base_model_name_or_path}) or by an ICPT version that did not record "
                "its backbone: re-encode the concepts with this model."
            )

    def _prompts(self, concepts, concept_names, concept_name_ids, concept_name_mask, image_inputs):
        """
        Prompt rows to inject, as `(rows, lengths or None, encoding or None)`: a bank's rows for the concepts the
        inputs name (`concept_names`, in the order `prompt_concepts` indexes), or freshly encoded from the
        references given with the query; with neither, the checkpoint's own concepts when it has some.
        """
        if concepts is None and concept_name_ids is None and concept_names is not None:
            concepts = self.concepts
        if concepts is not None:
            self._check_bank(concepts)
            if concept_names is None:
                raise ICPTInputError(
                    "The inputs do not say which concepts fill their prompt slots (no concept_names): build them "
                    "with ICPTProcessor(..., concepts=bank)."
                )
            missing = [name for name in concept_names if name not in concepts]
            if missing:
                raise ICPTInputError(
                    f"The inputs were built for concepts {missing[:5]} that the given bank does not hold "
                    f"({concepts.labels[:10]}): pass the model the bank the processor was given."
                )
            index = torch.tensor([concepts.index(name) for name in concept_names], dtype=torch.long)
            device = self.projector.queries.device
            return concepts.prompts[index].to(device), concepts._lengths[index], None
        if concept_name_ids is None:
            return None, None, None
        concept_index = image_inputs.pop("concept_index")
        rows, projector_inputs, complexity = self._encode(concept_name_ids, concept_name_mask, concept_index, **image_inputs)
        return rows, None, (projector_inputs, complexity)

    @staticmethod
    def _split_reference_inputs(kwargs):
        return {k[len(REFERENCE_PREFIX):]: kwargs.pop(k) for k in list(kwargs) if k.startswith(REFERENCE_PREFIX)}

    # ---------------------------------------------------------------- forward and generate

    def forward(self, input_ids=None, labels=None, prompt_concepts=None, concepts: ConceptBank | None = None,
                concept_names=None, concept_name_ids=None, concept_name_mask=None, **kwargs) -> ICPTOutput:
        """
        The backbone's forward pass with each concept's prompt rows in its slots.

        Concepts come either as `concepts=` (a `ConceptBank`; `concept_names` from the processor say which
        of its concepts fill the slots) or as the reference inputs the processor returns with the query
        (training: gradients then flow into the projector).
        With `labels`, `loss` is the LM loss on answer tokens (prompt slots never count) plus the weighted
        regularizers, and, when the batch carries identity targets (`target_rows` and `target_`-prefixed
        reference inputs, from `icpt.training.EpisodeCollator`), the weighted `identity_target_loss`.
        """
        target_inputs = {k[len(TARGET_PREFIX):]: kwargs.pop(k) for k in list(kwargs) if k.startswith(TARGET_PREFIX)}
        image_inputs = self._split_reference_inputs(kwargs)
        prompts, lengths, encoding = self._prompts(concepts, concept_names, concept_name_ids, concept_name_mask, image_inputs)
        if labels is not None and input_ids is not None:
            # a slot is filled with a prompt row, never predicted (its id may lie outside the LM's vocabulary)
            labels = labels.masked_fill(input_ids == self.config.prompt_token_id, -100)
        with self._prompts_injected(input_ids, prompts, prompt_concepts, lengths):
            outputs = self.vlm(input_ids=input_ids, labels=labels, **kwargs)
        result = ICPTOutput(logits=outputs.logits, cache=getattr(outputs, "cache", None),
                            lm_loss=outputs.loss)
        if lengths is not None:
            result.prompt_lengths = lengths
        if encoding is not None:
            projector_inputs, complexity = encoding
            result.prompt_lengths = prompt_lengths(complexity.nan_to_num(), self.config)
            if labels is not None:
                result.decoupling_loss, result.separation_loss = self._regularizers(
                    prompts, projector_inputs, result.prompt_lengths, concept_names)
        if target_inputs and labels is not None and self.config.identity_target_weight > 0:
            result.identity_target_loss = self.identity_target_loss(**target_inputs)
        if outputs.loss is not None:
            result.loss = outputs.loss
            if result.decoupling_loss is not None:
                result.loss = (result.loss + self.config.decoupling_weight * result.decoupling_loss
                               + self.config.separation_weight * result.separation_loss)
            if result.identity_target_loss is not None:
                result.loss = result.loss + self.config.identity_target_weight * result.identity_target_loss
        return result

    def identity_target_loss(self, rows, concept_name_ids, concept_name_mask, reference_concept_index,
                             concept_names=None, **image_inputs) -> torch.Tensor:
        """
        How far the projector's rows for some concepts are from their identity target rows (`L_id` in
        docs/method.md): `rows` are the targets `(C, max_prompt_length, d_lm)`, the rest is the processor's
        `prepare_references(...)` output for the same C concepts. Gradients flow into the projector.

        Example:

        ```python
        >>> inputs = processor.prepare_references({"<w7>": photos})  # doctest: +SKIP
        >>> model.identity_target_loss(targets.rows[:1], **inputs)  # doctest: +SKIP
        tensor(0.1460, grad_fn=<DivBackward0>)
        ```
        """
        expected = (concept_name_ids.shape[0], self.config.max_prompt_length, self.config.text_hidden_size)
        if tuple(rows.shape) != expected:
            raise ValueError(
                f"Identity targets have shape {tuple(rows.shape)} but this projector writes {expected} for these "
                "concepts: fit the targets with --rows equal to the projector's max_prompt_length, on its backbone."
            )
        image_inputs = {k[len(REFERENCE_PREFIX):]: v for k, v in image_inputs.items() if k.startswith(REFERENCE_PREFIX)}
        predicted, _, _ = self._encode(concept_name_ids, concept_name_mask, reference_concept_index, **image_inputs)
        return row_regression_loss(predicted, rows.to(predicted.device))

    def _regularizers(self, rows, projector_inputs, lengths, concept_names):
        """L_dec (subset invariance + environment orthogonality) and L_sep, see docs/method.md."""
        config = self.config
        zero = rows.sum() * 0
        z = pooled_descriptors(rows, lengths)
        decoupling = zero
        if config.decoupling_weight > 0:
            background = projector_inputs.get("background")
            inputs = {k: v for k, v in projector_inputs.items() if k != "background"}
            mask, which = inputs["patch_mask"], inputs["reference_index"]
            num_refs = torch.where(mask, which + 1, 0).amax(dim=1)  # references per concept
            max_refs = int(num_refs.max())
            # one projector pass for subsets A (even references), B (odd) and each single reference
            views = [mask & (which % 2 == 0), mask & (which % 2 == 1)] + [mask & (which == i) for i in range(max_refs)]
            batch = {k: v.repeat(len(views), *([1] * (v.dim() - 1))) for k, v in inputs.items()}
            batch["patch_mask"] = torch.cat(views)
            view_rows = self.projector(**batch).view(len(views), *rows.shape)
            view_z = torch.stack([pooled_descriptors(r, lengths) for r in view_rows])
            invariance = subset_invariance_loss(view_z[0], view_z[1], valid=num_refs >= 2)
            environment = view_z[2:].transpose(0, 1) - z.unsqueeze(1)  # (C, N, d): what photo i adds
            present = torch.arange(max_refs, device=rows.device)[None, :] < num_refs[:, None]
            valid = present & (num_refs[:, None] >= 2)
            if background is not None:
                # a background-only view shows the environment itself: use it where one exists
                view_inputs, concept, position = background
                background_rows = self.projector(**view_inputs)
                background_z = pooled_descriptors(background_rows, lengths[concept])
                environment = environment.index_put((concept, position), background_z - z[concept])
                valid = valid.index_put((concept, position), torch.ones_like(concept, dtype=torch.bool))
            decoupling = invariance + environment_orthogonality_loss(z, environment, valid)
        separation = zero
        if config.separation_weight > 0:
            names = list(concept_names) if concept_names is not None else [str(i) for i in range(z.shape[0])]
            separation = separation_loss(z, names, config.separation_margin)
        return decoupling, separation

    @torch.no_grad()
    def generate(self, input_ids=None, prompt_concepts=None, concepts: ConceptBank | None = None, concept_names=None,
                 concept_name_ids=None, concept_name_mask=None, **kwargs):
        """
        The backbone's own `generate()` with the concepts' prompt rows in their slots.

        Pass `concepts=bank` (encoded once with `encode_concepts`) or the processor's reference
        inputs; a personalized checkpoint's own concepts need neither. Every other argument is the backbone's
        `generate()` argument. References are encoded here once, before decoding starts, and never travel
        through the per-step inputs.
        """
        image_inputs = self._split_reference_inputs(kwargs)
        prompts, lengths, _ = self._prompts(concepts, concept_names, concept_name_ids, concept_name_mask, image_inputs)
        if input_ids is not None and isinstance(kwargs.get("max_new_tokens"), int):
            self._check_prompt_fits(input_ids.shape[-1], kwargs["max_new_tokens"])
        with self._prompts_injected(input_ids, prompts, prompt_concepts, lengths):
            return self.vlm.generate(input_ids=input_ids, **kwargs)


__all__ = ["ICPTForConditionalGeneration", "ICPTPreTrainedModel", "ICPTOutput"]
