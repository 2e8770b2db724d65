"""Stage 1's loss (icpt/world/pretraining/contrastive.py)."""

import torch

from icpt.world.pretraining.contrastive import supervised_contrastive_loss


def test_supervised_contrastive_loss_prefers_clustered_views():
    torch.manual_seed(0)
    centres = torch.randn(8, 16)
    classes = torch.arange(8).repeat_interleave(4)
    clustered = centres[classes] + 0.05 * torch.randn(32, 16)
    assert supervised_contrastive_loss(clustered, classes, 0.1) < supervised_contrastive_loss(
        clustered[torch.randperm(32)], classes, 0.1
    )
