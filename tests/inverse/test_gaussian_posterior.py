"""Acceptance 1 and 4: every sampler on Gaussian priors with linear A, exact ones within Monte-Carlo error.

Tolerances: for n independent draws the sample mean has standard error sqrt(diag(Sigma)/n) and a
sample covariance entry has standard error sqrt((Sigma_ij^2 + Sigma_ii Sigma_jj)/n). The exact
samplers must keep the largest standardised error (over all coordinates / entries) below 5 (mean)
and 5.5 (covariance, up to 2080 entries at d = 64); a true exact sampler exceeds them with
probability < 1e-3. The approximate samplers must beat the prior by a per-method fraction (see
test_approximate_samplers_beat_the_prior).
"""

from __future__ import annotations

import functools
import math

import pytest
import torch

from flowbridge.analytic import GaussianMixture, gaussian_posterior
from flowbridge.inverse import Gaussian, MatrixOperator, Measurement, sample
from flowbridge.inverse.samplers import TimeGrid


def gaussian_problem(
    d: int, d_y: int, rank: int, seed: int, scale: float = 1.0
) -> tuple[GaussianMixture, Measurement, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    l = torch.randn(d, d, generator=g, dtype=torch.float64) / math.sqrt(d)
    cov = l @ l.T + 0.3 * torch.eye(d, dtype=torch.float64)
    mean = torch.randn(d, generator=g, dtype=torch.float64)
    a = torch.randn(d_y, rank, generator=g, dtype=torch.float64) @ torch.randn(rank, d, generator=g, dtype=torch.float64) / math.sqrt(rank) * scale
    x = mean + torch.linalg.cholesky(cov) @ torch.randn(d, generator=g, dtype=torch.float64)
    sigma = 0.3
    y = a @ x + sigma * torch.randn(d_y, generator=g, dtype=torch.float64)
    post = gaussian_posterior(mean, cov, a, sigma, y)
    prior = GaussianMixture(torch.ones(1, dtype=torch.float64), mean[None], cov[None])
    return prior, Measurement(y, MatrixOperator(a), Gaussian(sigma)), post.mean, post.cov


def chain_posterior(prior: GaussianMixture, meas: Measurement, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact posterior of the *discretised* prior chain that the SMC samplers target.

    With an exact Gaussian prior N(mu, C = U diag(lam) U^T) the ancestral chain is linear: along each
    eigenvector the deviation y = u^T(x - alpha mu) evolves as y' = (c_x + c_1 k) y + N(0, var) with
    k = alpha lam / (alpha^2 lam + sigma^2), so the chain's own prior is N(mu + U m, U diag(v) U^T) in
    closed form. (At 100 uniform steps v/lam is 0.78-0.94: the DDPM chain under-disperses.)
    """
    grid = TimeGrid.build(prior.field("vp").gaussian_path, steps)
    mu, cov = prior.means[0], prior.covs[0]
    lam, u = torch.linalg.eigh(cov)
    m = -grid.alpha[0] * (u.T @ mu)
    v = torch.full_like(lam, grid.sigma[0] ** 2)
    for i in range(grid.steps):
        k = grid.alpha[i] * lam / (grid.alpha[i] ** 2 * lam + grid.sigma[i] ** 2)
        c_x, c_1, var = grid.bridge(i)
        m, v = (c_x + c_1 * k) * m, (c_x + c_1 * k) ** 2 * v + var
    chain_mean, chain_cov = mu + u @ m, u @ torch.diag(v) @ u.T
    post = gaussian_posterior(chain_mean, chain_cov, meas.operator.matrix, meas.noise.sigma, meas.y)
    return post.mean, post.cov


def standardised_errors(samples: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> tuple[float, float]:
    n = samples.shape[0]
    z_mean = (samples.mean(0) - mean) / torch.sqrt(torch.diagonal(cov) / n)
    emp = torch.cov(samples.T)
    var = torch.diagonal(cov)
    z_cov = (emp - cov) / torch.sqrt((cov**2 + var[:, None] * var[None, :]) / n)
    return float(z_mean.abs().max()), float(z_cov.abs().max())


FAST_CASES = [  # (d, d_y, rank, method, particles)
    (2, 1, 1, "mcgdiff", 16), (16, 8, 4, "mcgdiff", 16), (2, 1, 1, "tds", 16), (2, 1, 1, "ensemble", 16),
]


@pytest.mark.parametrize("d,d_y,rank,method,particles", FAST_CASES)
def test_exact_samplers_match_the_gaussian_posterior(d: int, d_y: int, rank: int, method: str, particles: int) -> None:
    prior, meas, mean, cov = gaussian_problem(d, d_y, rank, seed=d)
    out = sample(prior.field("vp"), meas, method, num_samples=1500, steps=100, particles=particles,
                 generator=torch.Generator().manual_seed(0))
    z_mean, z_cov = standardised_errors(out.samples, mean, cov)
    assert z_mean < 5.0 and z_cov < 5.5, (z_mean, z_cov)


def high_dim_problem(d: int, d_y: int, rank: int) -> tuple[GaussianMixture, Measurement, torch.Tensor, torch.Tensor]:
    """A correlated Gaussian prior observed in ``d_y`` directions with O(1) singular values, and the exact
    posterior of the *discretised* prior chain (what SMC targets; see :func:`chain_posterior`)."""
    prior, meas, _, _ = gaussian_problem(d, d_y, rank, seed=d + d_y, scale=1 / math.sqrt(d))
    mean, cov = chain_posterior(prior, meas, 100)
    return prior, meas, mean, cov


def mean_bias_statistic(samples: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> float:
    r""":math:`B = \frac1d\sum_i z_i^2 - 1`, :math:`z_i` the standardised error of coordinate ``i``'s sample mean.

    For an exact sampler :math:`E[B] = 0`; a bias :math:`b_i` (in posterior standard deviations) adds
    :math:`n\,\overline{b^2}`. Its null standard deviation is :func:`null_sd_of_bias_statistic`.
    """
    n = samples.shape[0]
    z = (samples.mean(0) - mean) / torch.sqrt(torch.diagonal(cov) / n)
    return float((z**2).mean()) - 1.0


def null_sd_of_bias_statistic(cov: torch.Tensor) -> float:
    r"""sd of :math:`B` for exact samples: :math:`\sqrt{2\sum_{ij}\rho_{ij}^2}/d` (:math:`z` Gaussian with correlation :math:`\rho`)."""
    sd = torch.sqrt(torch.diagonal(cov))
    rho = cov / (sd[:, None] * sd[None, :])
    return math.sqrt(2.0 * float((rho**2).sum())) / cov.shape[0]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["tds", "ensemble"])
def test_twisted_samplers_match_the_chain_posterior_with_every_direction_observed(method: str) -> None:
    """d = d_y = 16 (every direction observed), 128 particles, against the chain's exact posterior.

    Measured (n = 500): worst mean error 3.1 standard errors for both, B = 0.56 / 0.51 (null sd 0.49);
    with 16 particles B = 9.2 / 17.0: the finite-particle bias is gone by 128. (Against the true
    posterior at 100 steps the means miss by 11-14 standard errors: the chain's own prior is
    under-dispersed, see :func:`chain_posterior`.)"""
    prior, meas, mean, cov = high_dim_problem(16, 16, 16)
    out = sample(prior.field("vp"), meas, method, num_samples=500, steps=100, particles=128,
                 generator=torch.Generator().manual_seed(0))
    z_mean, z_cov = standardised_errors(out.samples, mean, cov)
    assert z_mean < 5.0 and z_cov < 5.5, (z_mean, z_cov)


@pytest.mark.slow
def test_mcgdiff_bias_with_many_observed_directions_shrinks_with_particles() -> None:
    """MCGdiff's finite-particle bias when every direction is observed and the prior is correlated.

    Its potentials see only the observed spectral coordinates (a flat prior there) and its moves of
    the other coordinates are the prior's, so with a correlated prior the weights carry the whole
    mismatch: at d = d_y = 16 the mean-bias statistic B (0 for an exact sampler) measured 12.0 with 16
    particles and 3.6 with 128 at n = 500 (tds / ensemble: 0.56 / 0.51 at 128). At d = 64, d_y = 32
    (n = 1000) the rms mean bias fell from 0.135 to 0.105 to 0.071 posterior standard deviations at
    32 / 128 / 512 particles: it shrinks as particles grow (SMC's O(1/P) bias, pre-asymptotic here)
    rather than settling on a wrong answer, as a wrong reference or a missing weight term would.
    Tolerance: SMC theory gives B(128) ~ B(16) / 64 asymptotically; we require at least a halving,
    plus four null standard deviations for the Monte-Carlo noise of B."""
    prior, meas, mean, cov = high_dim_problem(16, 16, 16)
    stats = {}
    for particles in (16, 128):
        out = sample(prior.field("vp"), meas, "mcgdiff", num_samples=500, steps=100, particles=particles,
                     generator=torch.Generator().manual_seed(0))
        stats[particles] = mean_bias_statistic(out.samples, mean, cov)
    noise = null_sd_of_bias_statistic(cov)
    assert stats[16] > 8 * noise, stats  # the bias is real at 16 particles (measured 12.0 vs noise 0.49)
    assert stats[128] < 0.5 * stats[16] + 4 * noise, stats


# Per method: (fraction of the prior's mean error, fraction of the prior's covariance error) that the
# sampler's *bias* may keep; see test_approximate_samplers_beat_the_prior for the derivation.
APPROXIMATE_FRACTIONS: dict[str, tuple[float, float]] = {
    # Gaussian conditional N(x1_hat, r_t^2 I), exact for N(0, I) (test below); here the prior's eigenvalues
    # run 0.30-4.1 and the shift cap (covariance_bound = 1) binds above 1: a residual bias of the order
    # of that mismatch, not of the prior's distance to the posterior.
    "pigdm": (0.25, 0.5),
    # Exact spectral update for a prior that V diagonalises with unit scale; V does not diagonalise this
    # prior and eta_b = 1 uses the unshrunk y_tilde while sigma_bar >= kappa: a shrinkage bias of order
    # kappa^2 / (lambda + kappa^2), small at sigma_y = 0.3 with O(1) singular values.
    "ddrm": (0.25, 0.5),
    # MCMC on the decoupled posterior N(x1; x1_hat, r_k^2 I) p(y | x1), r_k -> 0 at the end: the same
    # isotropic-conditional bias as pigdm, the spread set by the MCMC target, not by a heuristic.
    "daps": (0.25, 0.5),
    # Self-normalised residual-norm step (zeta = 1): p(y | x_t) replaced by p(y | x1_hat), no calibration
    # of the spread (mode-seeking): the mean must move clearly towards y; the covariance only no worse.
    "dps": (0.5, 1.0),
    # Paper default gamma = 1, not the calibrated r_t^2 / sigma_y^2 (about 11 at the clean end), 5 CG
    # steps, DDIM re-noising with the network's noise: data consistency without a calibrated spread.
    "dds": (0.5, 1.0),
    # Localised ensemble Kalman fit (default localization = 0.5) with 32 members: documented too wide in
    # the observed directions (module docstring); the slope is fitted on a neighbourhood of a few members.
    "enkg": (0.5, 1.0),
}


@functools.cache
def approximate_sampler_errors(method: str) -> dict[str, tuple[float, float]]:
    """``{"mean": (error, bound), "cov": (error, bound)}`` for one run of ``method`` (see the test below)."""
    prior, meas, mean, cov = gaussian_problem(16, 8, 4, seed=16)
    n = 1000
    scale_m, scale_c = torch.sqrt(torch.trace(cov)), cov.norm()
    prior_mean_err = float((prior.means[0] - mean).norm() / scale_m)
    prior_cov_err = float((prior.covs[0] - cov).norm() / scale_c)
    opts = {"particles": 32} if method == "enkg" else {}
    out = sample(prior.field("vp"), meas, method, num_samples=n, steps=50, generator=torch.Generator().manual_seed(0), **opts)
    emp = torch.cov(out.samples.T)
    rel_mean = float((out.samples.mean(0) - mean).norm() / scale_m)
    rel_cov = float((emp - cov).norm() / scale_c)
    mc_mean = 2.0 * float(torch.sqrt(torch.trace(emp) / n) / scale_m)
    mc_cov = 1.5 * float(torch.sqrt((emp.norm() ** 2 + torch.trace(emp) ** 2) / n) / scale_c)
    f_mean, f_cov = APPROXIMATE_FRACTIONS[method]
    bound_mean, bound_cov = f_mean * prior_mean_err + mc_mean, f_cov * prior_cov_err + mc_cov
    assert f_mean >= 1.0 or bound_mean < prior_mean_err  # the bound can fail a sampler that ignores y
    assert f_cov >= 1.0 or bound_cov < prior_cov_err
    return {"mean": (rel_mean, bound_mean), "cov": (rel_cov, bound_cov)}


def _approximate_case(method: str, quantity: str, measured: str | None = None) -> object:
    marks = [pytest.mark.xfail(strict=True, reason=measured)] if measured else []
    return pytest.param(method, quantity, marks=marks, id=f"{method}-{quantity}")


APPROXIMATE_CASES = [
    _approximate_case("ddrm", "mean"), _approximate_case("ddrm", "cov"),
    _approximate_case("pigdm", "mean"), _approximate_case("pigdm", "cov"),
    _approximate_case("dds", "mean"), _approximate_case("dds", "cov"),
    _approximate_case("dps", "mean"),
    _approximate_case("dps", "cov", "measured 3.26 against bound 0.98 (prior 0.67): over-dispersed, trace of the "
                      "sample covariance 33.0 against the posterior's 15.9, one direction with variance 18.8 (posterior's largest 3.7)"),
    _approximate_case("daps", "mean", "measured 0.319 against bound 0.223 (f = 0.25; prior 0.703)"),
    _approximate_case("daps", "cov", "measured 0.495 against bound 0.412 (f = 0.5; prior 0.668): under-dispersed, "
                      "trace 8.9 against the posterior's 15.9, largest variance 1.89 against 3.68"),
    _approximate_case("enkg", "mean"),
    _approximate_case("enkg", "cov", "measured 0.752 against bound 0.701 (f = 1; prior 0.668): worse than the prior, "
                      "collapsed (trace 3.7 against the posterior's 15.9) with the default localization and 32 members"),
]


@pytest.mark.parametrize("method,quantity", APPROXIMATE_CASES)
def test_approximate_samplers_beat_the_prior(method: str, quantity: str) -> None:
    r"""Approximate samplers must be clearly closer to the posterior than the prior is.

    Errors: :math:`e_m = \|\bar x - \mu\| / \sqrt{\operatorname{tr}\Sigma}` and
    :math:`e_C = \|S - \Sigma\|_F / \|\Sigma\|_F` against the exact posterior :math:`N(\mu, \Sigma)`.
    The prior's own errors (exact, :math:`\bar x = \mu_0`, :math:`S = \Sigma_0`) are 0.703 and 0.668 on
    this problem (d = 16, rank-4 operator, sigma_y = 0.3).

    Bound: :math:`e \le f \cdot e_{\text{prior}} + \text{MC margin}`, ``f`` per method from its known bias
    (:data:`APPROXIMATE_FRACTIONS`; 0.5 = "halves the prior's distance" is the least that counts as
    clearly better; 0.25 for the methods exact for an N(0, I) prior; 1.0 on the covariance for the
    methods whose spread is not calibrated). By the triangle inequality the sample error is at most the
    method's bias plus the Monte-Carlo error of n = 1000 draws from the sampler's own law (covariance
    :math:`\Sigma_s`, estimated by ``S``):

    * mean: :math:`E\|\bar x - E\bar x\|^2 = \operatorname{tr}\Sigma_s / n`, rms
      :math:`\sqrt{\operatorname{tr}\Sigma_s / n}` (0.032 relative at :math:`\Sigma_s = \Sigma`);
    * covariance: :math:`E\|S - \Sigma_s\|_F^2 = (\|\Sigma_s\|_F^2 + (\operatorname{tr}\Sigma_s)^2)/n`
      (from :math:`\operatorname{Var} S_{ij} = (\Sigma_{ij}^2 + \Sigma_{ii}\Sigma_{jj})/n`; 0.093 relative at
      :math:`\Sigma_s = \Sigma`).

    The margin is 2x the rms for the mean and 1.5x for the covariance: over 2000 simulated sets of
    1000 exact Gaussian draws at the posterior's and at the prior's covariance the 99.9% quantiles of
    error / rms were 1.89 / 1.78 (mean) and 1.46 / 1.37 (covariance). Fractions and margins were fixed
    before the samplers' errors were measured; a method that misses its bound is an ``xfail(strict=True)``
    with the measured figure, not a looser bound.
    """
    error, bound = approximate_sampler_errors(method)[quantity]
    assert math.isfinite(error) and error < bound, (method, quantity, error, bound)


def test_pigdm_is_exact_for_a_standard_normal_prior() -> None:
    """With p(x1) = N(0, I), PiGDM's Gaussian approximation of p(y | x_t) is exact."""
    d = 6
    g = torch.Generator().manual_seed(5)
    a = torch.randn(3, d, generator=g, dtype=torch.float64)
    y = torch.randn(3, generator=g, dtype=torch.float64)
    prior = GaussianMixture(torch.ones(1, dtype=torch.float64), torch.zeros(1, d, dtype=torch.float64), torch.ones(1, dtype=torch.float64))
    post = gaussian_posterior(torch.zeros(d, dtype=torch.float64), torch.eye(d, dtype=torch.float64), a, 0.5, y)
    out = sample(prior.field("vp"), Measurement(y, MatrixOperator(a), Gaussian(0.5)), "pigdm", num_samples=3000,
                 steps=200, generator=torch.Generator().manual_seed(1))
    z_mean, z_cov = standardised_errors(out.samples, post.mean, post.cov)
    assert z_mean < 5.0 and z_cov < 5.5, (z_mean, z_cov)


def sbc_ranks(method: str, problems: int, draws: int, seed: int) -> torch.Tensor:
    """Simulation-based calibration: rank of x* among ``draws`` posterior draws, per coordinate."""
    g = torch.Generator().manual_seed(seed)
    d = 2
    cov = torch.tensor([[1.0, 0.6], [0.6, 2.0]], dtype=torch.float64)
    mean = torch.tensor([0.5, -1.0], dtype=torch.float64)
    prior = GaussianMixture(torch.ones(1, dtype=torch.float64), mean[None], cov[None])
    field = prior.field("vp")
    a = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    chol = torch.linalg.cholesky(cov)
    ranks = []
    for _ in range(problems):
        x = mean + chol @ torch.randn(d, generator=g, dtype=torch.float64)
        y = a @ x + 0.5 * torch.randn(1, generator=g, dtype=torch.float64)
        out = sample(field, Measurement(y, MatrixOperator(a), Gaussian(0.5)), method, num_samples=draws, steps=50,
                     particles=8, generator=g)
        ranks.append((out.samples < x[None]).sum(0))
    return torch.stack(ranks)  # (problems, d) in {0, ..., draws}


def chi_square_uniform(ranks: torch.Tensor, bins: int) -> float:
    counts = torch.bincount(ranks.reshape(-1), minlength=bins).double()
    expected = ranks.numel() / bins
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.parametrize("method", ["mcgdiff", "tds"])
def test_simulation_based_calibration(method: str) -> None:
    ranks = sbc_ranks(method, problems=80, draws=9, seed=11)  # ranks in 0..9: 10 bins, 160 ranks
    # chi-square with 9 degrees of freedom: P(X > 27.9) = 0.001.
    assert chi_square_uniform(ranks, 10) < 27.9


@pytest.mark.slow
@pytest.mark.parametrize("method", ["mcgdiff", "tds", "ensemble"])
def test_simulation_based_calibration_many_problems(method: str) -> None:
    ranks = sbc_ranks(method, problems=400, draws=9, seed=12)
    assert chi_square_uniform(ranks, 10) < 27.9
