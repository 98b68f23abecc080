r"""Gaussian mixtures with exact fields under any Gaussian path: flowbridge's ground truth.

For :math:`x_1 \sim \sum_k w_k N(\mu_k, \Sigma_k)` and :math:`x_t = \alpha x_1 + \sigma x_0`, the
marginal is :math:`\sum_k w_k N(\alpha\mu_k, C_k)` with :math:`C_k = \alpha^2\Sigma_k + \sigma^2 I`.
With responsibilities :math:`r_k(x) \propto w_k N(x; \alpha\mu_k, C_k)` and
:math:`\delta_k = x - \alpha\mu_k`,

.. math::
    E[x_1|x] = \sum_k r_k (\mu_k + \alpha\Sigma_k C_k^{-1}\delta_k), \quad
    E[x_0|x] = \sum_k r_k\,\sigma C_k^{-1}\delta_k, \quad
    \nabla\log p_t(x) = -\sum_k r_k C_k^{-1}\delta_k.

Every covariance is diagonalised once, :math:`\Sigma_k = U_k \mathrm{diag}(\ell_k) U_k^T`, so that
:math:`C_k^{-1}` costs a rotation at every ``t`` and ``E[x_1|x], E[x_0|x]`` are computed directly
(no division by :math:`\alpha` or :math:`\sigma`): the field is regular on the closed interval.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowbridge._utils import as_time, check_state, check_unit_interval, expand_like
from flowbridge.errors import ArgumentError
from flowbridge.fields.base import Field
from flowbridge.paths.gaussian import GaussianPath
from flowbridge.random import RandomSource, rand, randn


class GaussianMixture:
    """A Gaussian mixture in :math:`R^d` with full covariances.

    Args:
        weights: (K,) non-negative, summing to 1.
        means: (K, d).
        covs: (K, d, d) symmetric positive definite, or (K, d) diagonals, or (K,) isotropic variances.

    Raises:
        ValueError: on inconsistent shapes, weights that do not sum to 1, or covariances that are
            not positive definite.
    """

    def __init__(self, weights: Tensor, means: Tensor, covs: Tensor) -> None:
        for name, value in (("weights", weights), ("means", means), ("covs", covs)):
            if not isinstance(value, (Tensor, list, tuple)):
                raise ArgumentError(f"{name} must be a tensor; got {type(value).__name__}")
        means = torch.as_tensor(means)
        if not means.is_floating_point():
            means = means.to(torch.get_default_dtype())
        weights = torch.as_tensor(weights, dtype=means.dtype, device=means.device)
        covs = torch.as_tensor(covs, dtype=means.dtype, device=means.device)
        if means.ndim != 2:
            raise ArgumentError(f"means must have shape (K, d); got {tuple(means.shape)}")
        k, d = means.shape
        if weights.shape != (k,):
            raise ArgumentError(f"weights must have shape ({k},) to match means; got {tuple(weights.shape)}")
        if not torch.isfinite(weights).all() or (weights < 0).any():
            raise ArgumentError("weights must be finite and non-negative")
        tol = 1e-5 if means.dtype != torch.float64 else 1e-9
        if abs(float(weights.sum()) - 1.0) > tol:
            raise ArgumentError(f"weights must sum to 1; they sum to {float(weights.sum()):.8g}")
        if covs.shape == (k,):
            covs = covs[:, None, None] * torch.eye(d, dtype=means.dtype, device=means.device)
        elif covs.shape == (k, d):
            covs = torch.diag_embed(covs)
        if covs.shape != (k, d, d):
            raise ArgumentError(f"covs must have shape ({k}, {d}, {d}), ({k}, {d}) or ({k},); got {tuple(covs.shape)}")
        if not (bool(torch.isfinite(means).all()) and bool(torch.isfinite(covs).all())):
            raise ArgumentError("means and covs must be finite")
        if not torch.allclose(covs, covs.transpose(-1, -2), atol=1e-6 * float(covs.abs().max()) + 1e-12):
            raise ArgumentError("covs must be symmetric")
        evals, evecs = torch.linalg.eigh(covs)
        if not (evals > 0).all():
            raise ArgumentError(f"covs must be positive definite; smallest eigenvalue {float(evals.min()):.3g}")
        self.weights, self.means, self.covs = weights, means, covs
        self.eigvals, self.eigvecs = evals, evecs

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    def to(self, *args: object, **kwargs: object) -> "GaussianMixture":
        """A copy on another device / dtype (``torch.Tensor.to`` semantics)."""
        return GaussianMixture(self.weights.to(*args, **kwargs), self.means.to(*args, **kwargs), self.covs.to(*args, **kwargs))

    def mean(self) -> Tensor:
        """The mixture's mean."""
        return self.weights @ self.means

    def covariance(self) -> Tensor:
        """The mixture's covariance (law of total covariance)."""
        m = self.mean()
        dm = self.means - m
        return torch.einsum("k,kij->ij", self.weights, self.covs) + torch.einsum("k,ki,kj->ij", self.weights, dm, dm)

    def sample(self, n: int, *, generator: RandomSource = None) -> Tensor:
        """``n`` exact draws, shape (n, d), from ``generator`` (component choice by inverse CDF)."""
        u = rand((n,), generator=generator, dtype=self.means.dtype, device=self.means.device)
        cdf = torch.cumsum(self.weights, 0)
        idx = torch.searchsorted(cdf, u * cdf[-1]).clamp_(max=self.n_components - 1)
        z = randn((n, self.dim), generator=generator, dtype=self.means.dtype, device=self.means.device)
        scale = self.eigvecs * torch.sqrt(self.eigvals)[:, None, :]  # U diag(sqrt(l)): a square root of Sigma
        return self.means[idx] + torch.einsum("nij,nj->ni", scale[idx], z)

    def component_log_prob(self, x: Tensor) -> Tensor:
        """:math:`\\log w_k + \\log N(x; \\mu_k, \\Sigma_k)` for every component, shape (N, K)."""
        return self._log_joint(x, torch.ones((), dtype=x.dtype, device=x.device), torch.zeros((), dtype=x.dtype, device=x.device))[0]

    def log_prob(self, x: Tensor) -> Tensor:
        """Log density at ``x`` (N, d)."""
        return torch.logsumexp(self.component_log_prob(x), dim=-1)

    def _params(self, like: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return (
            self.weights.to(like), self.means.to(like), self.eigvals.to(like), self.eigvecs.to(like)
        )

    def _log_joint(self, x: Tensor, alpha: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per-component log weights of the noised marginal, rotated residuals and variances.

        ``alpha`` and ``sigma`` are () or (B, 1). Returns log w_k N(x; alpha mu_k, C_k) (B, K),
        the residual in each component's eigenbasis (B, K, d) and the eigenvalues of C_k (B, K, d).
        """
        w, mu, ell, u = self._params(x)
        a = alpha.reshape(-1, 1, 1) if alpha.ndim else alpha
        s = sigma.reshape(-1, 1, 1) if sigma.ndim else sigma
        delta = x[:, None, :] - a * mu[None]  # (B, K, d)
        proj = torch.einsum("kji,bkj->bki", u, delta)  # U_k^T delta
        var = a * a * ell[None] + s * s  # (B or 1, K, d)
        logp = (
            torch.log(w)[None]
            - 0.5 * (proj * proj / var).sum(-1)
            - 0.5 * torch.log(var).sum(-1)
            - 0.5 * self.dim * math.log(2 * math.pi)
        )
        return logp, proj, var

    def log_prob_t(self, x: Tensor, t: Tensor | float, path: GaussianPath) -> Tensor:
        """Log density of the noised marginal :math:`p_t` of ``x_t = alpha x1 + sigma x0`` at ``x``."""
        c = path.coefficients(t, x)
        return torch.logsumexp(self._log_joint(x, c.alpha, c.sigma)[0], dim=-1)

    def posterior_means(self, x: Tensor, alpha: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """:math:`(E[x_1|x_t], E[x_0|x_t])` for ``x_t = alpha x1 + sigma x0`` with standard normal ``x0``."""
        logp, proj, var = self._log_joint(x, alpha, sigma)
        resp = torch.softmax(logp, dim=-1)[..., None]  # (B, K, 1)
        _, mu, ell, u = self._params(x)
        a = alpha.reshape(-1, 1, 1) if alpha.ndim else alpha
        s = sigma.reshape(-1, 1, 1) if sigma.ndim else sigma
        # Rotate back once for both means: sum_k r_k U_k (c_k * proj_k).
        scaled = resp * proj / var
        x1_dev = torch.einsum("kij,bkj->bi", u, scaled * a * ell[None])
        x0_hat = torch.einsum("kij,bkj->bi", u, scaled * s)
        x1_hat = (resp[..., 0] @ mu) + x1_dev
        return x1_hat, x0_hat

    def field(self, path: GaussianPath | str) -> "GaussianMixtureField":
        """The exact field of this mixture under ``path``."""
        return GaussianMixtureField(self, path if isinstance(path, GaussianPath) else GaussianPath(path))


class GaussianMixtureField(Field):
    """Exact velocity / data / noise / score of a :class:`GaussianMixture` under a Gaussian path.

    Inputs of shape (B, d) or (B, *shape) with prod(shape) = d (flattened internally).
    """

    def __init__(self, mixture: GaussianMixture, path: GaussianPath) -> None:
        super().__init__(path, "data")
        self.mixture = mixture

    def _flat(self, x: Tensor) -> Tensor:
        check_state(x)
        if x.ndim < 2 or math.prod(x.shape[1:]) != self.mixture.dim:
            raise ArgumentError(f"x must have {self.mixture.dim} features per sample; got shape {tuple(x.shape)}")
        return x.reshape(x.shape[0], self.mixture.dim)  # an explicit width: -1 is ambiguous for B = 0

    def _means(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        flat = self._flat(x)
        tt = as_time(t, flat)
        c = self.gaussian_path.schedule(expand_like(tt, flat))
        x1_hat, x0_hat = self.mixture.posterior_means(flat, c.alpha, c.sigma)
        return x1_hat.reshape(x.shape), x0_hat.reshape(x.shape)

    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        return self._means(x, t)[0]

    def data(self, x: Tensor, t: Tensor) -> Tensor:
        return self._means(x, t)[0]

    def noise(self, x: Tensor, t: Tensor) -> Tensor:
        return self._means(x, t)[1]

    def velocity(self, x: Tensor, t: Tensor) -> Tensor:
        x1_hat, x0_hat = self._means(x, t)
        return self.gaussian_path.from_posterior_means(x1_hat, x0_hat, "velocity", x, t)

    def score(self, x: Tensor, t: Tensor) -> Tensor:
        x1_hat, x0_hat = self._means(x, t)
        return self.gaussian_path.from_posterior_means(x1_hat, x0_hat, "score", x, t)

    def sde_drift(self, x: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        x1_hat, x0_hat = self._means(x, t)
        c = self.gaussian_path.coefficients(t, x)
        return c.d_alpha * x1_hat + c.d_sigma * x0_hat - eps * x0_hat / c.sigma

    def log_prob(self, x: Tensor, t: Tensor | float) -> Tensor:
        """Exact log density of the marginal at time ``t``."""
        return self.mixture.log_prob_t(self._flat(x), t, self.gaussian_path)


def gaussian_flow_map(
    mean: Tensor, cov: Tensor, path: GaussianPath, x: Tensor, t_start: float, t_end: float
) -> Tensor:
    r"""Exact probability-flow ODE map of a single Gaussian target :math:`N(\mu, \Sigma)`.

    In the eigenbasis of :math:`\Sigma` each coordinate has marginal variance
    :math:`c(t) = \alpha^2\ell + \sigma^2` and the PF-ODE is :math:`\dot y = \tfrac12 (\dot c/c)\,y` for
    :math:`y = U^T(x - \alpha\mu)`, hence :math:`y(t_1) = \sqrt{c(t_1)/c(t_0)}\;y(t_0)`.

    Args:
        mean: (d,) mean of the Gaussian target.
        cov: (d, d) covariance of the Gaussian target.
        path: the Gaussian path.
        x: (B, d) states at ``t_start``.
        t_start: start time in [0, 1].
        t_end: end time in [0, 1].
    """
    check_state(x, "x")
    if x.ndim != 2 or x.shape[1] != mean.shape[-1]:
        raise ArgumentError(f"x must have shape (B, {mean.shape[-1]}); got {tuple(x.shape)}")
    check_unit_interval(float(t_start), "t_start")
    check_unit_interval(float(t_end), "t_end")
    ell, u = torch.linalg.eigh(cov.to(x))
    mean = mean.to(x)
    s0 = path.schedule(torch.tensor(float(t_start), dtype=x.dtype))
    s1 = path.schedule(torch.tensor(float(t_end), dtype=x.dtype))
    c0 = s0.alpha**2 * ell + s0.sigma**2
    c1 = s1.alpha**2 * ell + s1.sigma**2
    y = (x - s0.alpha * mean) @ u
    return s1.alpha * mean + (y * torch.sqrt(c1 / c0)) @ u.T
