"""ICPT configuration."""

from transformers import PreTrainedConfig


class ICPTConfig(PreTrainedConfig):
    r"""
    Configuration of an ICPT projector and of how its prompts enter a frozen backbone.

    The backbone itself is not part of this configuration: it is loaded by name
    (`base_model_name_or_path`) and stays frozen. The widths recorded here
    (`text_hidden_size`, `vision_hidden_size`) are checked against the backbone at load time,
    so a projector is never silently paired with a backbone it was not built for.

    Args:
        base_model_name_or_path (`str`, *optional*):
            Hub id or local path of the backbone (any supported `AutoModelForImageTextToText`).
        backbone_model_type (`str`, *optional*):
            `model_type` of that backbone, e.g. `"llava"` or `"qwen2_vl"`.
        text_hidden_size (`int`):
            Width of the backbone LM's input embeddings; the projector writes rows of this width.
        vision_hidden_size (`int`):
            Width of the backbone vision encoder's hidden states.
        vision_layers (`list[int]`):
            Vision encoder blocks whose outputs feed the projector (1-based, negative from the end),
            concatenated along the feature dimension. A middle and the last block give both
            fine detail and semantics.
        projector_hidden_size (`int`): Width `d` of the projector's attention blocks.
        projector_layers (`int`): Number of cross-attention + self-attention blocks.
        projector_heads (`int`): Attention heads in each block.
        min_prompt_length (`int`, *optional*): Fewest prompt rows a concept can get. Default: `max_prompt_length`,
            so the length rule is off by default (on the embedded default it gave every concept the fewest rows and cost
            0.078 weighted recognition, docs/results.md); set it lower to let the rule choose.
        max_prompt_length (`int`): Most prompt rows a concept can get (the projector's query count).
        adaptive_length (`bool`):
            If `True`, each concept gets `min..max` rows by the visual complexity of its references;
            if `False`, every concept gets `max_prompt_length` rows (the fixed-length ablation).
        length_slope (`float`), length_bias (`float`):
            `a` and `b` of the length rule `L = min + round((max - min) * sigmoid(a * kappa + b))`.
        max_references (`int`): Most reference images per concept (size of the reference-index embedding).
        prompt_token (`str`): The reserved placeholder token whose embeddings are replaced by prompt rows.
        prompt_token_id (`int`, *optional*): Its id in the backbone's tokenizer (set by `from_backbone`).
        prompt_norm (`float`):
            Initial L2 norm of every prompt row: the median norm of the LM's token embeddings from
            `from_backbone`; training starts a fresh projector at the median norm of the backbone's image
            tokens instead (`ICPTForConditionalGeneration.match_image_token_norm`).
        decoupling_weight (`float`): λ_dec, weight of the identity/environment decoupling loss. Default 0 (off):
            its ablation showed no detectable effect, under environment shift or overall (docs/results.md).
        separation_weight (`float`): λ_sep, weight of the concept-separation loss. Default 0 (off): with identity
            targets and a reader adapter its ablation showed no detectable effect (docs/method.md §6).
        separation_margin (`float`): m, cosine above which two concepts' descriptors are pushed apart.
        identity_target_weight (`float`):
            λ_id, weight of the regression of the projector's rows onto identity target rows (training only,
            when the batch carries targets: `icpt.identity_targets`); 0 = no such term.
        reader_lora_rank (`int`):
            Rank of a LoRA adapter on the backbone's language model, trained with the projector once and
            shipped in the same checkpoint (the reader learns to read the rows; docs/method.md); 0 = the
            language model stays exactly the backbone's (a frozen reader).
        reader_lora_alpha (`float`): LoRA scaling numerator (the update is scaled by alpha / rank).
        reader_lora_modules (`list[str]`):
            Names of the language model's linear layers that get the adapter (its attention and MLP projections).

    Example:

    ```python
    >>> from modeling_icpt import ICPTConfig
    >>> config = ICPTConfig(text_hidden_size=256, vision_hidden_size=128, max_prompt_length=8)
    >>> config.min_prompt_length  # the length rule is off unless min_prompt_length < max_prompt_length
    8
    ```
    """

    model_type = "icpt"

    base_model_name_or_path: str | None = None
    backbone_model_type: str | None = None
    text_hidden_size: int = 256
    vision_hidden_size: int = 128
    vision_layers: list[int] | tuple[int, ...] = (-1,)
    projector_hidden_size: int = 256
    projector_layers: int = 2
    projector_heads: int = 4
    min_prompt_length: int | None = None
    max_prompt_length: int = 8
    adaptive_length: bool = True
    length_slope: float = 12.0
    length_bias: float = -6.0
    max_references: int = 8
    prompt_token: str = "<icpt>"
    prompt_token_id: int | None = None
    prompt_norm: float = 1.0
    decoupling_weight: float = 0.0
    separation_weight: float = 0.0
    separation_margin: float = 0.1
    identity_target_weight: float = 0.0
    reader_lora_rank: int = 0
    reader_lora_alpha: float = 32.0
    reader_lora_modules: list[str] | tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                        "down_proj")

    def __post_init__(self, **kwargs):
        if self.min_prompt_length is None:  # the length rule off: every concept gets max_prompt_length rows
            self.min_prompt_length = self.max_prompt_length
        self.vision_layers = list(self.vision_layers)
        self.reader_lora_modules = list(self.reader_lora_modules)
        problems = []
        for name in ("text_hidden_size", "vision_hidden_size", "projector_hidden_size", "projector_layers",
                     "projector_heads", "min_prompt_length", "max_prompt_length", "max_references"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.min_prompt_length > self.max_prompt_length:
            problems.append(
                f"min_prompt_length ({self.min_prompt_length}) must not exceed max_prompt_length ({self.max_prompt_length})"
            )
        if self.projector_hidden_size % max(self.projector_heads, 1):
            problems.append(
                f"projector_hidden_size ({self.projector_hidden_size}) must be divisible by projector_heads ({self.projector_heads})"
            )
        if not self.vision_layers or 0 in self.vision_layers:
            problems.append(f"vision_layers must be a non-empty list of non-zero block indices, got {self.vision_layers}")
        if self.reader_lora_rank > 0 and (not self.reader_lora_modules or self.reader_lora_alpha <= 0):
            problems.append("a reader adapter (reader_lora_rank > 0) needs reader_lora_modules and reader_lora_alpha > 0")
        for name in ("decoupling_weight", "separation_weight", "identity_target_weight", "prompt_norm", "reader_lora_rank"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if not -1.0 <= self.separation_margin < 1.0:
            problems.append(f"separation_margin is a cosine and must lie in [-1, 1), got {self.separation_margin}")
        if not self.prompt_token or any(c.isspace() for c in self.prompt_token):
            problems.append(f"prompt_token must be a non-empty string without spaces, got {self.prompt_token!r}")
        if problems:
            raise ValueError("Invalid ICPTConfig: " + "; ".join(problems) + ".")
        super().__post_init__(**kwargs)


__all__ = ["ICPTConfig"]
