"""Shared fixtures: analytic mixtures used as ground truth across the suite."""

from __future__ import annotations

import math
import os

import pytest
import torch

from flowbridge.analytic import GaussianMixture


def pytest_configure(config: pytest.Config) -> None:
    # Under pytest-xdist every worker would start one intra-op thread per core: 16 workers on 16
    # cores would run 256 threads and spin. Share the cores instead.
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(workers)))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--reverse-order", action="store_true", help="run the collected tests in reverse order")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The suite must not depend on test order: `pytest --reverse-order` checks it.
    if config.getoption("--reverse-order"):
        items.reverse()


def ring_mixture(d: int, k: int = 4, radius: float = 3.0, var: float = 0.1, dtype: torch.dtype = torch.float64) -> GaussianMixture:
    """``k`` well-separated components on a circle in the first two coordinates of R^d, with
    anisotropic full covariances so that every code path (rotation, unequal eigenvalues) is used."""
    g = torch.Generator().manual_seed(1234 + d)
    angles = torch.arange(k, dtype=dtype) * (2 * math.pi / k)
    means = torch.zeros(k, d, dtype=dtype)
    means[:, 0], means[:, 1] = radius * torch.cos(angles), radius * torch.sin(angles)
    a = torch.randn(k, d, d, generator=g, dtype=dtype) * 0.3
    covs = var * torch.eye(d, dtype=dtype) + 0.05 * a @ a.transpose(1, 2) / d
    weights = torch.linspace(1.0, 2.0, k, dtype=dtype)
    return GaussianMixture(weights / weights.sum(), means, covs)


@pytest.fixture
def mixture2d() -> GaussianMixture:
    return ring_mixture(2)
