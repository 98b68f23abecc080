"""Exact bridges against independent ground truth: the 1-D quadratic, the precision structure of an
entropic plan, Sinkhorn on samples, simulated SDEs, and brute-force conditional densities."""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import torch

import flowbridge
from flowbridge.analytic import EOTBenchmarkPair, GaussianBridge
from tests.bridges.toy import random_gaussian_bridge


@pytest.mark.parametrize("eps", [0.1, 1.0, 10.0])
def test_gaussian_bridge_solves_the_1d_quadratic(eps: float) -> None:
    # 1-D EOT between N(., a) and N(., b): c^2 + eps c - ab = 0, c > 0.
    a, b = 4.0, 9.0
    gb = GaussianBridge(torch.zeros(1), torch.tensor([[a]]), torch.ones(1), torch.tensor([[b]]), eps)
    c = float(gb.cross_covariance)
    assert c**2 + eps * c - a * b == pytest.approx(0.0, abs=1e-9)
    assert c == pytest.approx((-eps + math.sqrt(eps**2 + 4 * a * b)) / 2, rel=1e-12)


def test_dsbm_gaussian_case_cross_covariance() -> None:
    gb = GaussianBridge(0.1 * torch.ones(5), torch.eye(5), -0.1 * torch.ones(5), torch.eye(5), 1.0)
    expected = (math.sqrt(5) - 1) / 2
    assert torch.allclose(gb.cross_covariance, expected * torch.eye(5, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("d,eps", [(2, 0.1), (5, 1.0), (16, 10.0)])
def test_plan_has_entropic_precision_structure(d: int, eps: float) -> None:
    # pi(x, y) ∝ f(x) exp(<x, y>/eps) g(y)  <=>  off-diagonal precision block = -I/eps; with the right
    # marginals this characterises the EOT plan among Gaussians.
    gb = random_gaussian_bridge(d, eps, seed=d)
    precision = torch.linalg.inv(gb.joint_covariance())
    assert torch.allclose(precision[:d, d:], -torch.eye(d, dtype=torch.float64) / eps, atol=1e-8 * max(1, 1 / eps))
    assert float(torch.linalg.eigvalsh(gb.joint_covariance()).min()) > 0
    # conditional covariance = eps * gain (the LightSB form: mean r + S x, covariance eps S)
    cond = gb.conditional(torch.zeros(1, d, dtype=torch.float64))
    gain = torch.linalg.solve(gb.cov0, gb.cross_covariance).T
    assert torch.allclose(cond.cov, eps * gain, atol=1e-9)


def test_plan_matches_sinkhorn_on_samples() -> None:
    gb = random_gaussian_bridge(2, 1.0, seed=3)
    g = torch.Generator().manual_seed(0)
    n = 1500
    x = gb.sample_source(n, generator=g)
    y = gb.sample_target(n, generator=g)
    cost = 0.5 * torch.cdist(x, y).pow(2).numpy()
    w = np.full(n, 1.0 / n)
    plan = torch.from_numpy(ot.sinkhorn(w, w, cost, gb.eps, method="sinkhorn_log", numItermax=5000))
    xc, yc = x - x.mean(0), y - y.mean(0)
    cross = xc.T @ plan @ yc
    err = (cross - gb.cross_covariance).norm() / gb.cross_covariance.norm()
    assert err < 0.1, f"Sinkhorn cross-covariance {cross} vs exact {gb.cross_covariance}"


def test_sample_plan_moments() -> None:
    gb = random_gaussian_bridge(3, 0.5, seed=1)
    x0, x1 = gb.sample_plan(200_000, generator=torch.Generator().manual_seed(1))
    joint = torch.cov(torch.cat([x0, x1], 1).T)
    assert torch.allclose(joint, gb.joint_covariance(), atol=0.03)
    assert torch.allclose(x1.mean(0), gb.mean1, atol=0.02)


def test_marginal_and_drift_through_the_sde_sampler() -> None:
    gb = random_gaussian_bridge(2, 1.0, seed=2)
    g = torch.Generator().manual_seed(5)
    x0 = gb.sample_source(20_000, generator=g)
    out = flowbridge.sample(gb.field(), "bridge_euler_maruyama", 400, x0=x0, generator=g, return_trajectory=True)
    x1 = out.x
    # endpoints have the target law and the plan's cross-covariance
    assert torch.allclose(torch.cov(x1.T), gb.cov1, atol=0.06)
    assert torch.allclose(x1.mean(0), gb.mean1, atol=0.04)
    cross = ((x0 - x0.mean(0)).T @ (x1 - x1.mean(0))) / (x0.shape[0] - 1)
    assert torch.allclose(cross, gb.cross_covariance, atol=0.06)
    # the marginal at t = 0.5 matches the closed form
    mean, cov = gb.marginal(0.5)
    xm = out.trajectory[200]
    assert torch.allclose(torch.cov(xm.T), cov, atol=0.06)
    assert torch.allclose(xm.mean(0), mean, atol=0.04)


def test_drift_at_zero_is_conditional_mean_minus_x() -> None:
    gb = random_gaussian_bridge(4, 2.0, seed=4)
    x = gb.sample_source(7, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(gb.drift(x, 0.0), gb.conditional(x).mean - x, atol=1e-10)
    with pytest.raises(ValueError, match="t = 1"):
        gb.drift(x, 1.0)


def test_gaussian_bridge_bad_input() -> None:
    eye = torch.eye(2)
    with pytest.raises(ValueError, match="eps"):
        GaussianBridge(torch.zeros(2), eye, torch.zeros(2), eye, 0.0)
    with pytest.raises(ValueError, match="eps"):
        GaussianBridge(torch.zeros(2), eye, torch.zeros(2), eye, -1.0)
    with pytest.raises(ValueError, match="mean0 and mean1"):
        GaussianBridge(torch.zeros(2), eye, torch.zeros(3), torch.eye(3), 1.0)
    with pytest.raises(ValueError, match="positive definite"):
        GaussianBridge(torch.zeros(2), -eye, torch.zeros(2), eye, 1.0)


@pytest.mark.parametrize("eps", [0.1, 1.0])
def test_benchmark_conditional_is_the_normalised_product(eps: float) -> None:
    pair = EOTBenchmarkPair(3, eps, seed=7)
    g = torch.Generator().manual_seed(0)
    x = pair.sample_source(4, generator=g)
    y = torch.randn(4, 50, 3, generator=g, dtype=torch.float64) * 2
    # log pi(y|x) from the mixture vs log N(y|x, eps I) + log sum_k p_k N(y|mu_k, Sigma_k): differ by a
    # constant in y for each x.
    cond = pair.conditional(x)
    comp = torch.distributions.MultivariateNormal(cond.means[:, None], cond.covs[None, None])  # (4, 1, K)
    log_pi = torch.logsumexp(torch.log_softmax(cond.logits, -1)[:, None] + comp.log_prob(y[:, :, None]), -1)
    potential = torch.distributions.MultivariateNormal(pair.means, pair.covs)
    log_product = (
        torch.distributions.Normal(x[:, None], math.sqrt(eps)).log_prob(y).sum(-1)
        + torch.logsumexp(torch.log(pair.weights) + potential.log_prob(y[:, :, None]), -1)
    )
    diff = log_pi - log_product
    assert float((diff - diff.mean(1, keepdim=True)).abs().max()) < 1e-9


def test_benchmark_sampling_matches_conditional_moments() -> None:
    pair = EOTBenchmarkPair(2, 1.0, seed=0)
    x = pair.sample_source(1, generator=torch.Generator().manual_seed(1)).expand(100_000, -1)
    y = pair.sample_conditional(x, generator=torch.Generator().manual_seed(2))
    mean, cov = pair.conditional_moments(x[:1])
    assert torch.allclose(y.mean(0), mean[0], atol=0.02)
    assert torch.allclose(torch.cov(y.T), cov[0], atol=0.03)


def test_benchmark_is_seeded_and_validated() -> None:
    a, b, c = EOTBenchmarkPair(4, 1.0, seed=3), EOTBenchmarkPair(4, 1.0, seed=3), EOTBenchmarkPair(4, 1.0, seed=4)
    assert torch.equal(a.means, b.means) and not torch.equal(a.means, c.means)
    assert a.target_variance() > 0
    with pytest.raises(ValueError, match="eps"):
        EOTBenchmarkPair(4, 0.0)
    with pytest.raises(ValueError, match="dim"):
        EOTBenchmarkPair(0, 1.0)
