"""Which known concepts a photo most likely shows: retrieval keys and a top-k search over a concept bank.

A concept's retrieval key is the mean of its references' patch features from the backbone's vision tower (the last
layer ICPT reads), as a unit vector; a query photo's key is the same mean over its own patches. The bank finds the
concepts whose keys lie closest to the query's (cosine similarity, one normalized matrix product). This is the
retrieval step of RAP (Hao et al., 2024), with the frozen tower ICPT already runs in place of a separate encoder:
the user asks "Who is in this photo?" and the retrieved concepts enter the prompt without being named.

Shapes: C concepts, Q queries, d = the key width (the vision tower's hidden size).
"""

import torch


def concept_keys(patch_features: torch.Tensor, patch_mask: torch.Tensor, width: int) -> torch.Tensor:
    """
    `(C, width)` unit retrieval keys of C concepts from the projector's padded inputs: the mean of the last `width`
    channels (the last vision layer read) over every real patch of every reference of a concept.

    Example:

    ```python
    >>> import torch
    >>> keys = concept_keys(torch.randn(2, 10, 64), torch.ones(2, 10, dtype=torch.bool), width=32)
    >>> keys.shape, bool(torch.allclose(keys.norm(dim=-1), torch.ones(2)))
    (torch.Size([2, 32]), True)
    ```
    """
    features = patch_features[..., -width:].float()
    mask = patch_mask.unsqueeze(-1).to(features.dtype)
    pooled = (features * mask).sum(1) / mask.sum(1).clamp_min(1)
    return torch.nn.functional.normalize(pooled, dim=-1)


def image_keys(features: list[torch.Tensor], width: int) -> torch.Tensor:
    """
    `(R, width)` unit retrieval keys of R images from their patch features (`reference_features`' output):
    the mean of the last `width` channels over each image's patches.

    Example:

    ```python
    >>> import torch
    >>> image_keys([torch.randn(16, 64), torch.randn(9, 64)], width=32).shape
    torch.Size([2, 32])
    ```
    """
    pooled = torch.stack([f[:, -width:].float().mean(0) for f in features])
    return torch.nn.functional.normalize(pooled, dim=-1)


def top_k(keys: torch.Tensor, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """
    The `k` keys most similar to each query, best first, as `(scores, indices)`, each `(Q, k)`.

    An exact search: one `(Q, d) x (d, C)` matrix product and `torch.topk`. On 100,000 concepts of 128 dimensions
    it takes a few milliseconds on one CPU thread (docs/performance.md measures it against faiss and usearch),
    so no approximate index is needed at the sizes a person's concepts reach.

    Example:

    ```python
    >>> import torch
    >>> keys = torch.nn.functional.normalize(torch.randn(100, 8), dim=-1)
    >>> scores, indices = top_k(keys, keys[[3, 7]], k=2)
    >>> indices[:, 0].tolist()
    [3, 7]
    ```
    """
    k = min(int(k), keys.shape[0])
    scores = queries.to(keys.dtype) @ keys.T
    return scores.topk(k, dim=-1)
