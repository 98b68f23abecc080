"""Toy 2-D data for the bridge tests (self-contained: 8 Gaussians and two moons)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowbridge.analytic import GaussianBridge


def eight_gaussians(n: int, *, generator: torch.Generator | None = None, radius: float = 2.0, std: float = 0.15) -> Tensor:
    """``n`` points from 8 isotropic Gaussians on a circle (float32)."""
    k = torch.randint(8, (n,), generator=generator)
    angle = k.to(torch.float32) * (2 * math.pi / 8)
    centres = radius * torch.stack([torch.cos(angle), torch.sin(angle)], 1)
    return centres + std * torch.randn(n, 2, generator=generator)


def moons(n: int, *, generator: torch.Generator | None = None, noise: float = 0.05) -> Tensor:
    """``n`` points from the two interleaving half circles (scikit-learn's layout), centred and scaled."""
    upper = torch.rand(n, generator=generator) < 0.5
    angle = math.pi * torch.rand(n, generator=generator)
    x = torch.where(upper, torch.cos(angle), 1 - torch.cos(angle))
    y = torch.where(upper, torch.sin(angle), 0.5 - torch.sin(angle))
    pts = torch.stack([x - 0.5, y - 0.25], 1) * 1.5
    return pts + noise * torch.randn(n, 2, generator=generator)


def random_spd(d: int, g: torch.Generator, low: float = 0.25, high: float = 2.0) -> Tensor:
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    evals = low + (high - low) * torch.rand(d, generator=g, dtype=torch.float64)
    return (q * evals) @ q.T


def random_gaussian_bridge(d: int, eps: float, seed: int = 0, diagonal: bool = False) -> GaussianBridge:
    """A Gaussian-to-Gaussian bridge with random means and (full or diagonal) covariances."""
    g = torch.Generator().manual_seed(seed)
    if diagonal:
        cov0 = torch.diag(0.25 + 1.75 * torch.rand(d, generator=g, dtype=torch.float64))
        cov1 = torch.diag(0.25 + 1.75 * torch.rand(d, generator=g, dtype=torch.float64))
    else:
        cov0, cov1 = random_spd(d, g), random_spd(d, g)
    mean0 = torch.randn(d, generator=g, dtype=torch.float64)
    mean1 = torch.randn(d, generator=g, dtype=torch.float64)
    return GaussianBridge(mean0, cov0, mean1, cov1, eps)
