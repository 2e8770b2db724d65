"""Property tests of the two regularizers and the row regression, on hand-built tensors."""

import pytest
import torch

from modeling_icpt.concept_losses import (
    environment_orthogonality_loss,
    pooled_descriptors,
    row_regression_loss,
    separation_loss,
    subset_invariance_loss,
)


def test_subset_invariance_is_zero_for_identical_descriptors_and_grows_with_divergence():
    z = torch.randn(3, 8)
    assert subset_invariance_loss(z, z.clone()).abs() < 1e-6
    losses = []
    for angle in (0.2, 0.8, 1.6, 3.0):
        other = torch.tensor([[torch.cos(torch.tensor(angle)), torch.sin(torch.tensor(angle))]])
        losses.append(float(subset_invariance_loss(torch.tensor([[1.0, 0.0]]), other)))
    assert losses == sorted(losses) and losses[0] > 0


def test_subset_invariance_ignores_concepts_with_one_reference():
    z_a, z_b = torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert subset_invariance_loss(z_a, z_b, valid=torch.tensor([True, False])).abs() < 1e-6
    assert subset_invariance_loss(z_a, z_b, valid=torch.tensor([False, False])) == 0


def test_orthogonality_is_zero_for_orthogonal_environment_directions():
    z = torch.tensor([[1.0, 0.0, 0.0]])
    environment = torch.tensor([[[0.0, 2.0, 0.0], [0.0, 0.0, -1.0]]])
    valid = torch.ones(1, 2, dtype=torch.bool)
    assert environment_orthogonality_loss(z, environment, valid).abs() < 1e-7
    aligned = torch.tensor([[[3.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    assert torch.isclose(environment_orthogonality_loss(z, aligned, valid), torch.tensor(0.5))
    # invalid entries (a concept with fewer references) do not count
    assert environment_orthogonality_loss(z, aligned, torch.tensor([[False, True]])).abs() < 1e-7


def test_separation_is_zero_beyond_the_margin_and_positive_for_identical_concepts():
    far = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # cosine 0 < margin 0.1
    assert separation_loss(far, ["<a>", "<b>"], margin=0.1) == 0
    same = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    assert torch.isclose(separation_loss(same, ["<a>", "<b>"], margin=0.1), torch.tensor(0.81))
    # equal labels are the same concept seen in two episodes: never pushed apart
    assert separation_loss(same, ["<a>", "<a>"], margin=0.1) == 0


def test_degenerate_cases_are_finite_and_differentiable():
    one = torch.randn(1, 4, requires_grad=True)
    zero = torch.zeros(1, 4, requires_grad=True)
    losses = [
        subset_invariance_loss(one, one),
        subset_invariance_loss(zero, zero),
        environment_orthogonality_loss(one, torch.zeros(1, 1, 4), torch.ones(1, 1, dtype=torch.bool)),
        environment_orthogonality_loss(zero, zero.unsqueeze(1), torch.ones(1, 1, dtype=torch.bool)),
        separation_loss(one, ["<a>"], margin=0.1),
    ]
    for loss in losses:
        assert torch.isfinite(loss)
        loss.backward(retain_graph=True)
    assert torch.isfinite(one.grad).all() and torch.isfinite(zero.grad).all()


def test_pooled_descriptors_use_only_the_first_rows():
    rows = torch.arange(12.0).view(1, 4, 3)
    torch.testing.assert_close(pooled_descriptors(rows, torch.tensor([2])), rows[0, :2].mean(0, keepdim=True))


def test_row_regression_loss_is_relative_to_the_targets():
    targets = torch.randn(2, 3, 5)
    assert float(row_regression_loss(targets.clone(), targets)) == 0.0
    assert float(row_regression_loss(torch.zeros_like(targets), targets)) == pytest.approx(1.0)
    assert float(row_regression_loss(2 * targets, targets)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="differ in shape"):
        row_regression_loss(torch.zeros(2, 2, 5), targets)
