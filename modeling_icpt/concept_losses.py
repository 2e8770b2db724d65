"""The two geometric regularizers of ICPT, on pooled concept descriptors, and the identity-target regression.

A descriptor z is the mean of the prompt rows a concept uses. The three regularizer losses are defined
(finite, differentiable, zero when there is nothing to compare) for one concept, one reference and batch size 1.
"""

import torch
import torch.nn.functional as F

EPS = 1e-8


def pooled_descriptors(rows: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean of the first `lengths[c]` rows of each concept: `(C, L, d), (C,) -> (C, d)`."""
    keep = torch.arange(rows.shape[1], device=rows.device)[None, :] < lengths.to(rows.device)[:, None]
    keep = keep.unsqueeze(-1).to(rows.dtype)
    return (rows * keep).sum(1) / keep.sum(1).clamp_min(1)


def _cosine(a, b):
    # cosine that is 0, not NaN, when either side is the zero vector
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(EPS)


def subset_invariance_loss(z_a: torch.Tensor, z_b: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """`L_inv = mean_c (1 - cos(z_c^A, z_c^B))` over concepts with two disjoint reference subsets.

    Args:
        z_a, z_b: `(C, d)` descriptors from disjoint subsets A and B of each concept's references.
        valid: `(C,)` bool, False for concepts with a single reference (no split exists); they add 0.
    """
    loss = 1 - _cosine(z_a, z_b)
    if valid is None:
        return loss.mean()
    return (loss * valid).sum() / valid.sum().clamp_min(1)


def environment_orthogonality_loss(z: torch.Tensor, environment: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """`L_orth = mean_{c,i} cos^2(z_c, v_{c,i})`: identity descriptors orthogonal to environment directions.

    Args:
        z: `(C, d)` descriptor of each concept from all its references.
        environment: `(C, N, d)` environment directions `v_{c,i}` (what reference i, or its
            background-only view, adds beyond the identity).
        valid: `(C, N)` bool, which `v_{c,i}` exist (concepts have different reference counts).
    """
    cos2 = _cosine(z.unsqueeze(1), environment).pow(2)
    valid = valid.to(cos2.dtype)
    return (cos2 * valid).sum() / valid.sum().clamp_min(1)


def separation_loss(z: torch.Tensor, names: list[str], margin: float) -> torch.Tensor:
    """`L_sep = mean over pairs (c, c') with different labels of relu(cos(z_c, z_c') - m)^2`.

    Every pair of concepts in the batch counts (those of one episode and, as extra negatives,
    those of other episodes); two entries with the same label are the same concept and are not
    pushed apart. No pair (one concept) gives 0.
    """
    if z.shape[0] < 2:
        return z.sum() * 0
    cos = _cosine(z.unsqueeze(1), z.unsqueeze(0))
    same = torch.tensor([[a == b for b in names] for a in names], device=z.device)
    pairs = ~same & torch.ones_like(same).triu(diagonal=1)
    if not pairs.any():
        return z.sum() * 0
    return F.relu(cos[pairs] - margin).pow(2).mean()


def row_regression_loss(rows: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """`L_id = mean_{c,l} ||r_{c,l} - t_{c,l}||^2 / mean_{c,l} ||t_{c,l}||^2`: squared error of the prompt rows
    against identity target rows `(C, L, d)`, relative to the targets' own size (0 = exact, 1 = predicting 0)."""
    if rows.shape != targets.shape:
        raise ValueError(f"Prompt rows {tuple(rows.shape)} and identity targets {tuple(targets.shape)} differ in shape.")
    targets = targets.to(rows.dtype)
    return (rows - targets).pow(2).sum(-1).mean() / targets.pow(2).sum(-1).mean().clamp_min(EPS)
