"""LightSB: the closed-form drift, plan and density against independent ground truth, and fitting."""

from __future__ import annotations

import time

import pytest
import torch

import flowbridge
from flowbridge.bridges import LightSB
from flowbridge.metrics import cbw2_uvp, compare_to_truth, sliced_wasserstein
from tests.bridges.toy import random_gaussian_bridge


def set_exact_gaussian(model: LightSB, gb) -> None:
    """Sets a one-potential LightSB to the exact Gaussian SB: S = C^T Sigma0^{-1}, r = m1 - S m0."""
    gain = torch.linalg.solve(gb.cov0, gb.cross_covariance).T
    gain = 0.5 * (gain + gain.T)
    with torch.no_grad():
        model.r.copy_((gb.mean1 - gain @ gb.mean0)[None])
        if model.diagonal:
            model.log_s.copy_(torch.log(gain.diagonal())[None])
        else:
            chol = torch.linalg.cholesky(gain)
            model.tril_raw.copy_((torch.tril(chol, -1) + torch.diag(torch.log(chol.diagonal())))[None])


def random_model(dim: int, k: int, eps: float, covariance: str, seed: int = 0) -> LightSB:
    g = torch.Generator().manual_seed(seed)
    model = LightSB(dim, k, eps, covariance=covariance).double()
    with torch.no_grad():
        model.r.copy_(torch.randn(k, dim, generator=g, dtype=torch.float64) * 1.5)
        model.log_alpha.copy_(torch.randn(k, generator=g, dtype=torch.float64) * 0.5)
        if covariance == "diagonal":
            model.log_s.copy_(torch.randn(k, dim, generator=g, dtype=torch.float64) * 0.4 - 0.5)
        else:
            model.tril_raw.copy_(torch.randn(k, dim, dim, generator=g, dtype=torch.float64) * 0.3 - 0.3)
    return model


@pytest.mark.parametrize("covariance", ["diagonal", "full"])
@pytest.mark.parametrize("eps", [0.1, 1.0, 10.0])
def test_exact_gaussian_potential_reproduces_gaussian_bridge(covariance: str, eps: float) -> None:
    gb = random_gaussian_bridge(3, eps, seed=11, diagonal=covariance == "diagonal")
    model = LightSB(3, 1, eps, covariance=covariance).double()
    set_exact_gaussian(model, gb)
    x = gb.sample_source(64, generator=torch.Generator().manual_seed(0))
    mean, cov = model.conditional_moments(x)
    exact = gb.conditional(x)
    assert torch.allclose(mean, exact.mean, atol=1e-9) and torch.allclose(cov[0], exact.cov, atol=1e-9)
    y = gb.sample_conditional(x, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(model.log_prob(y, x), gb.log_prob_conditional(y, x), atol=1e-9)
    for t in (0.0, 0.3, 0.9, 0.999):
        assert torch.allclose(model.drift(x, t), gb.drift(x, t), atol=1e-7 / (1 - t)), t
    # batched times agree with scalar times
    tb = torch.linspace(0, 0.9, 64, dtype=torch.float64)
    assert torch.allclose(model.drift(x, tb), gb.drift(x, tb), atol=1e-7)


@pytest.mark.parametrize("covariance", ["diagonal", "full"])
def test_mixture_drift_matches_quadrature(covariance: str) -> None:
    # b(x, t) = ∫ (y - x)/(1 - t) N(y | x, (1 - t) eps) phi(y) dy / ∫ N(y | x, (1 - t) eps) phi(y) dy
    # with phi(y) = exp(|y|^2 / 2 eps) v(y): brute-force quadrature on a 2-D grid.
    eps = 0.7
    model = random_model(2, 3, eps, covariance, seed=2)
    grid = torch.linspace(-9, 9, 601, dtype=torch.float64)
    yy = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    log_phi = (yy**2).sum(-1) / (2 * eps) + model.log_potential(yy)
    x = torch.tensor([[0.3, -0.5], [1.0, 1.0], [-1.5, 0.2]], dtype=torch.float64)
    for t in (0.0, 0.4, 0.8):
        tau = 1 - t
        log_w = -((yy[None] - x[:, None]) ** 2).sum(-1) / (2 * tau * eps) + log_phi  # (3, G)
        w = torch.softmax(log_w, -1)
        expected = (w[..., None] * (yy[None] - x[:, None])).sum(1) / tau
        assert torch.allclose(model.drift(x, t), expected, atol=1e-6), t
    # and the plan at t = 0 has the same weights: E[y | x] - x
    assert torch.allclose(model.drift(x, 0.0), model.conditional_moments(x)[0] - x, atol=1e-10)


def test_log_prob_is_normalised_and_matches_sampling() -> None:
    model = random_model(2, 4, 0.5, "full", seed=3)
    x = torch.tensor([[0.5, -0.2]], dtype=torch.float64)
    grid = torch.linspace(-12, 12, 801, dtype=torch.float64)
    yy = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    mass = torch.exp(model.log_prob(yy, x.expand(yy.shape[0], -1))).sum() * (grid[1] - grid[0]) ** 2
    assert float(mass.detach()) == pytest.approx(1.0, abs=1e-4)
    y = model.sample(x.expand(200_000, -1), generator=torch.Generator().manual_seed(0))
    mean, cov = model.conditional_moments(x)
    assert torch.allclose(y.mean(0), mean[0], atol=0.01) and torch.allclose(torch.cov(y.T), cov[0], atol=0.02)


def test_sample_is_reproducible_and_batch_independent_with_seeds() -> None:
    model = random_model(2, 3, 1.0, "diagonal").float()
    x = torch.randn(6, 2)
    a = model.sample(x, generator=torch.Generator().manual_seed(4))
    b = model.sample(x, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    s1 = model.sample(x, generator=flowbridge.StackedGenerators(range(6)))
    s2 = model.sample(x[:3], generator=flowbridge.StackedGenerators(range(3)))
    assert torch.equal(s1[:3], s2)


@pytest.mark.parametrize("covariance", ["diagonal", "full"])
def test_sde_through_closed_form_drift_reproduces_plan(covariance: str) -> None:
    # Acceptance 4: endpoints of the SDE (flowbridge.sample, bridge_euler_maruyama) vs direct draws
    # from the closed-form plan, for sources from one fixed law; within 1.5x the noise floor.
    model = random_model(2, 4, 0.5, covariance, seed=5).float()
    n, sets = 2000, 4

    def source(m: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(m, 2, generator=generator) * 0.8

    def plan_target(m: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        return model.sample(source(m, generator=generator), generator=generator).detach()

    g = torch.Generator().manual_seed(0)
    x0 = source(n * sets, generator=g)
    out = flowbridge.sample(model.field(), "bridge_euler_maruyama", 200, x0=x0, generator=g)
    report = compare_to_truth(out.x.detach(), plan_target, sliced_wasserstein, sets=sets, generator=g)
    assert report.ratio < 1.5, str(report)


def test_probability_flow_solvers_refuse_a_bridge_field() -> None:
    model = LightSB(2, 2, 1.0)
    with pytest.raises(TypeError, match="bridge_euler_maruyama"):
        flowbridge.sample(model.field(), "euler", 4, x0=torch.zeros(3, 2))
    with pytest.raises(TypeError, match="BridgeField"):
        flowbridge.sample(flowbridge.GaussianMixture(torch.ones(1), torch.zeros(1, 2), torch.ones(1)).field("linear"),
                          "bridge_euler_maruyama", 4, shape=(3, 2))


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="eps"):
        LightSB(2, 4, eps=0.0)
    with pytest.raises(ValueError, match="eps"):
        LightSB(2, 4, eps=-1.0)
    with pytest.raises(ValueError, match="n_potentials"):
        LightSB(2, 0, eps=1.0)
    with pytest.raises(ValueError, match="covariance"):
        LightSB(2, 2, eps=1.0, covariance="dense")
    model = LightSB(2, 8, eps=1.0)
    with pytest.raises(ValueError, match="same dimension"):
        model.fit(torch.randn(20, 2), torch.randn(20, 3), steps=1)
    with pytest.raises(ValueError, match="dim=2"):
        model.fit(torch.randn(20, 3), torch.randn(20, 3), steps=1)
    with pytest.raises(ValueError, match="n_potentials=8"):
        model.fit(torch.randn(20, 2), torch.randn(5, 2), steps=1)
    with pytest.raises(ValueError, match="dim=2"):
        model.sample(torch.randn(4, 3))
    with pytest.raises(TypeError, match="floating"):
        model.sample(torch.ones(4, 2, dtype=torch.long))


def fit_gaussian(d: int, eps: float, steps: int, n: int, seed: int = 0, batch_size: int = 1024) -> tuple[float, float]:
    """Fits a full one-potential LightSB on n unpaired samples; returns (cBW2-UVP %, seconds)."""
    gb = random_gaussian_bridge(d, eps, seed=seed)
    g = torch.Generator().manual_seed(seed)
    x0 = gb.sample_source(n, generator=g, dtype=torch.float32)
    x1 = gb.sample_target(n, generator=g, dtype=torch.float32)
    model = LightSB(d, 1, eps, covariance="full", init_scale=1.0)
    start = time.perf_counter()
    model.fit(x0, x1, steps=steps, batch_size=batch_size, lr=1e-2, lr_final=1e-4, generator=g)
    seconds = time.perf_counter() - start
    xt = gb.sample_source(1000, generator=g, dtype=torch.float32)
    mean, cov = model.conditional_moments(xt)
    exact = gb.conditional(xt)
    value = cbw2_uvp(mean.detach(), cov.detach(), exact.mean, exact.cov, float(gb.cov1.trace()))
    return float(value), seconds


@pytest.mark.parametrize("eps", [1.0, 10.0])
def test_fit_gaussian_fast(eps: float) -> None:
    # small eps converges more slowly (logits scale like 1/eps); it is in the slow acceptance test
    value, _ = fit_gaussian(2, eps, steps=600, n=20_000, batch_size=512)
    assert value < 1.0


@pytest.mark.slow
@pytest.mark.parametrize("d", [2, 16, 64])
@pytest.mark.parametrize("eps", [0.1, 1.0, 10.0])
def test_fit_gaussian_acceptance(d: int, eps: float) -> None:
    value, seconds = fit_gaussian(d, eps, steps=5000, n=100_000)
    assert value < 1.0
    assert seconds < 300.0
