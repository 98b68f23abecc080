"""Ground-truth data laws for the BFN tests."""

from __future__ import annotations

import math

import pytest
import torch

from flowbridge.analytic import GaussianMixture


def mixture_1d() -> GaussianMixture:
    """A bimodal 1-D mixture with unequal weights and widths."""
    return GaussianMixture(
        torch.tensor([0.35, 0.65], dtype=torch.float64),
        torch.tensor([[-1.5], [1.0]], dtype=torch.float64),
        torch.tensor([0.09, 0.25], dtype=torch.float64),
    )


def mixture_2d() -> GaussianMixture:
    """Four anisotropic components on a ring in 2-D (unequal weights)."""
    k = 4
    angles = torch.arange(k, dtype=torch.float64) * (2 * math.pi / k) + 0.3
    means = 2.0 * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    covs = torch.tensor([[0.08, 0.03], [0.05, 0.02], [0.10, 0.06], [0.04, 0.04]], dtype=torch.float64)
    weights = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    return GaussianMixture(weights, means, covs)


@pytest.fixture
def mix1() -> GaussianMixture:
    return mixture_1d()


@pytest.fixture
def mix2() -> GaussianMixture:
    return mixture_2d()
