"""BW2-UVP and cBW2-UVP against closed forms."""

from __future__ import annotations

import pytest
import torch

from flowbridge.metrics import bures_wasserstein2, bw2_uvp, cbw2_uvp, mixture_moments, sample_moments


def test_bw2_one_dimensional_closed_form() -> None:
    # W2^2 between N(m1, s1^2) and N(m2, s2^2) is (m1 - m2)^2 + (s1 - s2)^2
    value = bures_wasserstein2(torch.tensor([1.0]), torch.tensor([[4.0]]), torch.tensor([-2.0]), torch.tensor([[9.0]]))
    assert float(value) == pytest.approx(9.0 + 1.0, rel=1e-6)


def test_bw2_commuting_covariances_and_symmetry() -> None:
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))
    la, lb = torch.rand(4, generator=g, dtype=torch.float64) + 0.5, torch.rand(4, generator=g, dtype=torch.float64) + 0.5
    a, b = (q * la) @ q.T, (q * lb) @ q.T
    m = torch.zeros(4, dtype=torch.float64)
    expected = ((la.sqrt() - lb.sqrt()) ** 2).sum()
    assert float(bures_wasserstein2(m, a, m, b)) == pytest.approx(float(expected), rel=1e-9)
    assert float(bures_wasserstein2(m, b, m, a)) == pytest.approx(float(expected), rel=1e-9)
    assert float(bures_wasserstein2(m, a, m, a)) == pytest.approx(0.0, abs=1e-12)


def test_uvp_normalisation() -> None:
    cov = torch.diag(torch.tensor([1.0, 3.0], dtype=torch.float64))
    shifted = torch.tensor([1.0, 0.0], dtype=torch.float64)
    # BW^2 = 1 (mean shift), Var = 4 -> 25 %
    assert float(bw2_uvp(shifted, cov, torch.zeros(2, dtype=torch.float64), cov)) == pytest.approx(25.0)
    means = torch.zeros(3, 2, dtype=torch.float64)
    value = cbw2_uvp(means + shifted, cov.expand(3, 2, 2), means, cov, target_variance=8.0)
    assert float(value) == pytest.approx(12.5)
    with pytest.raises(ValueError, match="target_variance"):
        cbw2_uvp(means, cov.expand(3, 2, 2), means, cov, target_variance=0.0)
    with pytest.raises(ValueError, match="shape"):
        cbw2_uvp(means[:2], cov.expand(2, 2, 2), means, cov, target_variance=1.0)


def test_mixture_and_sample_moments() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    means = torch.tensor([[[0.0, 0.0], [2.0, 1.0]]], dtype=torch.float64)
    covs = torch.stack([torch.eye(2), 0.5 * torch.eye(2)]).to(torch.float64)
    mean, cov = mixture_moments(logits, means, covs)
    w = torch.softmax(logits[0], 0)
    k = torch.multinomial(w, 400_000, replacement=True, generator=g)
    x = means[0, k] + torch.randn(400_000, 2, generator=g, dtype=torch.float64) * covs[k].diagonal(dim1=1, dim2=2).sqrt()
    m2, c2 = sample_moments(x)
    assert torch.allclose(mean[0], m2, atol=0.01) and torch.allclose(cov[0], c2, atol=0.01)
