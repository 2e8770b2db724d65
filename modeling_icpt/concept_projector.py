"""The ICPT projector: reference patch features + a label -> a concept's continuous prompt.

Shapes used throughout: C concepts, T patch tokens per concept (all references of a concept,
padded), d_in = len(vision_layers) * vision width, d = projector width, L = max_prompt_length,
d_lm = the LM's embedding width.
"""

import math

import torch
from torch import nn


class ProjectorBlock(nn.Module):
    """Queries read the reference patches (cross-attention), then each other (self-attention)."""

    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        self.cross_norm = nn.LayerNorm(hidden_size)
        self.cross_attn = nn.MultiheadAttention(hidden_size, num_heads, batch_first=True)
        self.self_norm = nn.LayerNorm(hidden_size)
        self.self_attn = nn.MultiheadAttention(hidden_size, num_heads, batch_first=True)
        self.mlp_norm = nn.LayerNorm(hidden_size)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, 4 * hidden_size), nn.GELU(), nn.Linear(4 * hidden_size, hidden_size)
        )

    def forward(self, queries, patches, patch_padding, output_attentions: bool = False):
        """The updated queries; with `output_attentions`, also the cross-attention weights `(C, L, T)`, mean over heads."""
        x = self.cross_norm(queries)
        attended, weights = self.cross_attn(x, patches, patches, key_padding_mask=patch_padding,
                                            need_weights=output_attentions)
        queries = queries + attended
        x = self.self_norm(queries)
        queries = queries + self.self_attn(x, x, x, need_weights=False)[0]
        queries = queries + self.mlp(self.mlp_norm(queries))
        return (queries, weights) if output_attentions else queries


class ConceptProjector(nn.Module):
    """
    Turns the patch features of all references of each concept, and the LM's embedding of the
    concept's label, into `max_prompt_length` rows in the LM's input-embedding space.

    Rows come out ordered by importance: training truncates prompts to their first rows
    (nested truncation), so row 0 carries the most identity.

    Example:

    ```python
    >>> import torch
    >>> from modeling_icpt import ICPTConfig
    >>> from modeling_icpt.concept_projector import ConceptProjector
    >>> config = ICPTConfig(text_hidden_size=64, vision_hidden_size=32, projector_hidden_size=32, projector_heads=2)
    >>> projector = ConceptProjector(config)
    >>> patches = torch.randn(2, 10, 32)  # 2 concepts, 10 patch tokens each
    >>> rows = projector(patches, torch.ones(2, 10, dtype=torch.bool), torch.zeros(2, 10, dtype=torch.long), torch.randn(2, 64))
    >>> rows.shape
    torch.Size([2, 8, 64])
    ```
    """

    def __init__(self, config):
        super().__init__()
        d, d_in = config.projector_hidden_size, config.vision_hidden_size * len(config.vision_layers)
        self.patch_norm = nn.LayerNorm(d_in)
        self.patch_proj = nn.Linear(d_in, d)
        # which reference a patch came from, so attention can weigh evidence across photos
        self.reference_embedding = nn.Embedding(config.max_references, d)
        # the label's own LM embedding binds the prompt to the name the user writes
        self.name_norm = nn.LayerNorm(config.text_hidden_size)
        self.name_proj = nn.Linear(config.text_hidden_size, d)
        self.queries = nn.Parameter(torch.randn(config.max_prompt_length, d) * 0.02)
        self.blocks = nn.ModuleList(
            ProjectorBlock(d, config.projector_heads) for _ in range(config.projector_layers)
        )
        self.out_norm = nn.LayerNorm(d)
        self.out_proj = nn.Linear(d, config.text_hidden_size)
        # rows are unit vectors times a learned scale that starts at the LM's typical token norm
        # shape (1,), not a scalar: FSDP cannot shard 0-d parameters
        self.log_row_norm = nn.Parameter(torch.tensor([math.log(max(config.prompt_norm, 1e-6))]))

    def forward(self, patch_features, patch_mask, reference_index, name_embeddings, output_attentions: bool = False):
        """
        Args:
            patch_features: `(C, T, d_in)` patch features of each concept's references, padded.
            patch_mask: `(C, T)` bool, True where a patch is real (False = padding / left out).
            reference_index: `(C, T)` long, which reference of the concept each patch came from.
            name_embeddings: `(C, d_lm)` mean LM input embedding of each label's tokens.
            output_attentions: also return, per block, the weights with which each prompt row's query read
                each patch (what a row "looks at"; returned, never stored, so concurrent calls stay apart).

        Returns:
            `(C, max_prompt_length, d_lm)` prompt rows; with `output_attentions`, a tuple `(rows, attentions)`
            where `attentions` holds one `(C, max_prompt_length, T)` tensor per block (mean over heads, zero
            on padding).
        """
        dtype = self.patch_proj.weight.dtype
        patches = self.patch_proj(self.patch_norm(patch_features.to(dtype)))
        patches = patches + self.reference_embedding(reference_index)
        name = self.name_proj(self.name_norm(name_embeddings.to(dtype)))
        queries = self.queries.unsqueeze(0) + name.unsqueeze(1)
        # a concept whose patches are all masked would make attention NaN: let it see one padding token
        padding = ~patch_mask
        padding[:, 0] &= patch_mask.any(dim=1)
        attentions = []
        for block in self.blocks:
            queries = block(queries, patches, padding, output_attentions=output_attentions)
            if output_attentions:
                queries, weights = queries
                attentions.append(weights)
        rows = self.out_proj(self.out_norm(queries))
        rows = nn.functional.normalize(rows, dim=-1) * self.log_row_norm.exp()
        return (rows, tuple(attentions)) if output_attentions else rows


def concept_complexity(features: torch.Tensor) -> torch.Tensor:
    """
    Visual complexity kappa in [0, 1] of one concept: the effective rank of its references'
    stacked patch features (centered), divided by the largest rank those features could have.

    Effective rank = exp(entropy of the normalized squared singular values). Identical, flat
    references span few directions (kappa near 0); varied, textured ones span many.

    Args:
        features: `(num_patches, width)` patch features of all references of one concept.
    """
    features = features.float()
    centered = features - features.mean(dim=0, keepdim=True)
    singular = torch.linalg.svdvals(centered)
    energy = singular.pow(2)
    total = energy.sum()
    max_rank = min(features.shape) - 1  # centering removes one dimension
    if max_rank < 1 or total <= 1e-12 * features.pow(2).sum().clamp_min(1e-30):
        return features.new_zeros(())
    p = energy / total
    entropy = -(p * torch.log(p.clamp_min(1e-30))).sum()
    return ((entropy.exp() - 1) / max(max_rank - 1, 1)).clamp(0, 1)


def prompt_lengths(complexity: torch.Tensor, config) -> torch.Tensor:
    """
    Prompt rows per concept: `L = min + round((max - min) * sigmoid(a * kappa + b))`, monotone
    in kappa; every concept gets `max_prompt_length` when `config.adaptive_length` is False.
    """
    if not config.adaptive_length:
        return torch.full_like(complexity, config.max_prompt_length, dtype=torch.long)
    span = config.max_prompt_length - config.min_prompt_length
    share = torch.sigmoid(config.length_slope * complexity.float() + config.length_bias)
    return config.min_prompt_length + torch.round(span * share).long()
