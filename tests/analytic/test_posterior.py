"""Exact posteriors: Bayes' rule checked pointwise, and the MCGdiff protocol's construction."""

from __future__ import annotations

import math

import torch

from flowbridge.analytic import GaussianMixture, GMMInverseProblem, gaussian_posterior, mixture_posterior


def _log_lik(x: torch.Tensor, a: torch.Tensor, sigma: float, y: torch.Tensor) -> torch.Tensor:
    r = y[None] - x @ a.T
    return -0.5 * (r * r).sum(1) / sigma**2


def test_mixture_posterior_is_prior_times_likelihood_up_to_a_constant() -> None:
    g = torch.Generator().manual_seed(0)
    d = 3
    l = torch.randn(2, d, d, generator=g, dtype=torch.float64)
    prior = GaussianMixture(
        torch.tensor([0.25, 0.75], dtype=torch.float64), torch.randn(2, d, generator=g, dtype=torch.float64) * 3,
        l @ l.transpose(1, 2) + 0.5 * torch.eye(d, dtype=torch.float64),
    )
    a = torch.randn(2, d, generator=g, dtype=torch.float64)
    y = torch.randn(2, generator=g, dtype=torch.float64)
    post = mixture_posterior(prior, a, 0.4, y)
    x = torch.randn(50, d, generator=g, dtype=torch.float64) * 3
    diff = post.log_prob(x) - prior.log_prob(x) - _log_lik(x, a, 0.4, y)
    assert float(diff.max() - diff.min()) < 1e-9


def test_gaussian_posterior_matches_information_form() -> None:
    g = torch.Generator().manual_seed(1)
    d = 4
    l = torch.randn(d, d, generator=g, dtype=torch.float64)
    cov = l @ l.T + torch.eye(d, dtype=torch.float64)
    mean = torch.randn(d, generator=g, dtype=torch.float64)
    a = torch.randn(2, d, generator=g, dtype=torch.float64)
    y = torch.randn(2, generator=g, dtype=torch.float64)
    post = gaussian_posterior(mean, cov, a, 0.3, y)
    precision = torch.linalg.inv(cov) + a.T @ a / 0.09
    torch.testing.assert_close(post.cov, torch.linalg.inv(precision))
    torch.testing.assert_close(post.mean, torch.linalg.solve(precision, torch.linalg.solve(cov, mean) + a.T @ y / 0.09))


def test_gmm_inverse_problem_protocol() -> None:
    pb = GMMInverseProblem(8, 2, seed=3)
    again = GMMInverseProblem(8, 2, seed=3)
    torch.testing.assert_close(pb.y, again.y)
    assert pb.prior.n_components == 25 and pb.matrix.shape == (2, 8)
    # Means: the 5 x 5 grid spaced 8 apart, tiled d/2 times.
    assert set(pb.prior.means[:, 0].tolist()) == {-16.0, -8.0, 0.0, 8.0, 16.0}
    torch.testing.assert_close(pb.prior.means[:, 2:4], pb.prior.means[:, :2])
    s = torch.linalg.svdvals(pb.matrix)
    torch.testing.assert_close(s, pb.singular_values)
    assert bool((s > 0).all() and (s < 1).all()) and 0 < pb.sigma_y < float(s.max())
    # Posterior covariances are (I + A^T A / sigma^2)^-1 for every component.
    expected = torch.linalg.inv(torch.eye(8, dtype=torch.float64) + pb.matrix.T @ pb.matrix / pb.sigma_y**2)
    torch.testing.assert_close(pb.posterior.covs[7], expected)
    assert math.isclose(float(pb.posterior.weights.sum()), 1.0, rel_tol=1e-12)


def test_unit_covariance_field_equals_the_general_mixture_field() -> None:
    pb = GMMInverseProblem(10, 1, seed=0)
    fast, slow = pb.prior_field("vp"), pb.prior.field("vp")
    x = torch.randn(64, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 8
    for t in (0.05, 0.5, 0.95):
        tt = torch.full((64,), t, dtype=torch.float64)
        torch.testing.assert_close(fast.data(x, tt), slow.data(x, tt))
        torch.testing.assert_close(fast.noise(x, tt), slow.noise(x, tt))
