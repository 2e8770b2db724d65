"""Stage 1's pieces: the tower's pooled patch features, the supervised-contrastive loss and the training-only heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from icpt.world.world import ATTRIBUTE_VALUES


def pooled_patch_features(vision_tower, pixels: torch.Tensor) -> torch.Tensor:
    """Mean of the last layer's patch tokens: the features the LM's connector will read."""
    pixels = pixels.to(vision_tower.device)
    hidden = vision_tower(pixels, output_hidden_states=True).hidden_states[-1]
    return hidden[:, 1:].mean(dim=1)


def supervised_contrastive_loss(embeddings: torch.Tensor, classes: torch.Tensor, temperature: float) -> torch.Tensor:
    """SupCon (Khosla et al. 2020): pull together views of one class, push apart the rest."""
    z = F.normalize(embeddings, dim=-1)
    logits = z @ z.T / temperature
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, -1e9)
    positives = (classes[:, None] == classes[None, :]) & ~self_mask
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    return -(log_prob * positives).sum(1).div(positives.sum(1).clamp(min=1)).mean()


class ContrastiveHead(torch.nn.Module):
    """Training-only heads on the pooled tower features (dropped afterwards): a projection for
    the contrastive loss and, optionally, one linear classifier per identity attribute."""

    def __init__(self, hidden: int):
        super().__init__()
        self.projection = torch.nn.Sequential(
            torch.nn.Linear(hidden, 2 * hidden), torch.nn.GELU(), torch.nn.Linear(2 * hidden, hidden)
        )
        self.attributes = torch.nn.ModuleDict(
            {name: torch.nn.Linear(hidden, len(values)) for name, values in ATTRIBUTE_VALUES.items()}
        )

    def loss(
        self,
        features: torch.Tensor,
        classes: torch.Tensor,
        attribute_labels: dict[str, torch.Tensor],
        temperature: float,
        attribute_weight: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        contrastive = supervised_contrastive_loss(self.projection(features), classes, temperature)
        if attribute_weight == 0:
            return contrastive, torch.zeros(())
        attribute = torch.stack(
            [F.cross_entropy(head(features), attribute_labels[name]) for name, head in self.attributes.items()]
        ).mean()
        return contrastive + attribute_weight * attribute, attribute
