"""Two-dimensional toy distributions drawn with a torch generator (no numpy global RNG).

All sets are scaled to roughly unit spread around the origin so that one noise scale suits them.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from flowbridge._utils import registry_error
from flowbridge.errors import ArgumentError


def _uniform(n: int, g: torch.Generator, lo: float = 0.0, hi: float = 1.0) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)


def _noise(n: int, g: torch.Generator, scale: float) -> Tensor:
    return scale * torch.randn(n, 2, generator=g, dtype=torch.float64)


def moons(n: int, g: torch.Generator) -> Tensor:
    """scikit-learn's two interleaving half circles (noise 0.05), centred and scaled by 2."""
    upper = n // 2
    theta = _uniform(n, g, 0.0, math.pi)
    x = torch.stack([torch.cos(theta), torch.sin(theta)], dim=1)
    lower = torch.stack([1 - torch.cos(theta), 0.5 - torch.sin(theta)], dim=1)
    x[upper:] = lower[upper:]
    x = x + _noise(n, g, 0.05)
    return (x - torch.tensor([0.5, 0.25], dtype=torch.float64)) * 2.0


def eight_gaussians(n: int, g: torch.Generator, radius: float = 2.0, std: float = 0.15) -> Tensor:
    """Eight Gaussians of standard deviation ``std`` evenly spaced on a circle of ``radius``."""
    k = torch.randint(0, 8, (n,), generator=g)
    angle = k.to(torch.float64) * (math.pi / 4)
    centres = radius * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    return centres + _noise(n, g, std)


def checkerboard(n: int, g: torch.Generator) -> Tensor:
    """Uniform on the dark squares of a 4x4 checkerboard over [-2, 2]^2."""
    x1 = _uniform(n, g, -2.0, 2.0)
    x2 = _uniform(n, g) - 2.0 * torch.randint(0, 2, (n,), generator=g).to(torch.float64)
    x2 = x2 + torch.floor(x1) % 2
    return torch.stack([x1, x2], dim=1)


def swissroll(n: int, g: torch.Generator) -> Tensor:
    """scikit-learn's 2-D swiss roll (noise 0.5 before scaling), scaled by 1/5."""
    t = 1.5 * math.pi * (1 + 2 * _uniform(n, g))
    x = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1) + _noise(n, g, 0.5)
    return x / 5.0


def circles(n: int, g: torch.Generator) -> Tensor:
    """Two concentric circles of radii 2 and 1 (noise 0.05 before scaling)."""
    theta = _uniform(n, g, 0.0, 2 * math.pi)
    radius = torch.where(torch.arange(n) < n // 2, 1.0, 0.5).to(torch.float64)
    x = radius[:, None] * torch.stack([torch.cos(theta), torch.sin(theta)], dim=1) + _noise(n, g, 0.05)
    return 2.0 * x


def spirals(n: int, g: torch.Generator) -> Tensor:
    """Two interleaved spirals (each the other rotated by pi), scaled by 1/3."""
    r = torch.sqrt(_uniform(n, g)) * (3 * math.pi)
    x = torch.stack([-torch.cos(r) * r, torch.sin(r) * r], dim=1)
    sign = torch.where(torch.arange(n) < n // 2, 1.0, -1.0).to(torch.float64)[:, None]
    return (sign * x + _noise(n, g, 0.5)) / 3.0


TOY2D: dict[str, Callable[[int, torch.Generator], Tensor]] = {
    "moons": moons,
    "8gaussians": eight_gaussians,
    "checkerboard": checkerboard,
    "swissroll": swissroll,
    "circles": circles,
    "spirals": spirals,
}


def sample_toy2d(name: str, n: int, *, generator: torch.Generator) -> Tensor:
    """``n`` float64 CPU points of the toy distribution ``name``, shuffled.

    Raises:
        ValueError: for an unknown name (listing the known ones) or ``n < 1``.
    """
    if name not in TOY2D:
        raise registry_error("toy data set", name, list(TOY2D))
    if not (isinstance(n, int) and n >= 1):
        raise ArgumentError(f"n must be a positive integer; got {n!r}")
    x = TOY2D[name](n, generator)
    return x[torch.randperm(n, generator=generator)]
