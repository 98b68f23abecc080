r"""Exact Schrödinger bridges: Gaussian to Gaussian in closed form, and entropic-OT benchmark pairs.

Both use the convention of :mod:`flowbridge.bridges`: source at :math:`t = 0`, target at
:math:`t = 1`, Brownian reference of variance :math:`\varepsilon`, i.e. the entropic OT problem
:math:`\min_\pi E_\pi \tfrac12|x - y|^2 - \varepsilon H(\pi)` whose plan has the form
:math:`\pi(x, y) \propto f(x)\,e^{\langle x, y\rangle/\varepsilon}\,g(y)`.

**Gaussian EOT** (Janati et al. 2020; Bunne et al. 2023; derived here). For Gaussian marginals the
plan is Gaussian, and the form above says that the off-diagonal block of the joint *precision* is
:math:`-I/\varepsilon`. With joint covariance :math:`[[\Sigma_0, C], [C^\top, \Sigma_1]]` this gives
:math:`C\,(\Sigma_1 - C^\top\Sigma_0^{-1}C)^{-1} = \Sigma_0/\varepsilon`, solved by

.. math::
    C = \tfrac12\big(\Sigma_0^{1/2} D\,\Sigma_0^{-1/2} - \varepsilon I\big),\qquad
    D = \big(4\,\Sigma_0^{1/2}\Sigma_1\Sigma_0^{1/2} + \varepsilon^2 I\big)^{1/2}

(in 1-D: :math:`c^2 + \varepsilon c - \sigma_0^2\sigma_1^2 = 0`). The bridge is the mixture of
Brownian bridges :math:`X_t = (1-t)X_0 + tX_1 + \sqrt{\varepsilon t(1-t)}\,Z` over this plan; being
Markov, its drift is :math:`b(x, t) = E[X_1 - X_t \mid X_t = x]/(1 - t)`, linear in :math:`x`.

**Benchmark pairs** (Gushchin et al., NeurIPS 2023 D&B, rebuilt with our own seeds):
:math:`P_0` a Gaussian mixture and :math:`\pi(y\mid x) \propto N(y\mid x, \varepsilon I)
\sum_k p_k N(y\mid\mu_k, \Sigma_k)`, a Gaussian mixture with weights
:math:`\propto p_k N(x\mid\mu_k, \Sigma_k + \varepsilon I)`, covariances
:math:`(\Sigma_k^{-1} + I/\varepsilon)^{-1}` and means :math:`(\Sigma_k^{-1} + I/\varepsilon)^{-1}
(\Sigma_k^{-1}\mu_k + x/\varepsilon)`. It has the form above with
:math:`g(y) = e^{-|y|^2/2\varepsilon}\sum_k p_k N(y\mid\mu_k,\Sigma_k)`, so it *is* the entropic OT plan
between :math:`P_0` and its second marginal :math:`P_1`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from flowbridge._utils import as_time, check_unit_interval
from flowbridge.analytic.mixture import GaussianMixture
from flowbridge.fields.bridge import BridgeField
from flowbridge.errors import ArgumentError
from flowbridge.random import RandomSource, rand, randn, randn_like

__all__ = ["ConditionalGaussian", "EOTBenchmarkPair", "GaussianBridge", "GaussianBridgeField", "MixtureConditional"]


def _sym_sqrt(a: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric square root and inverse square root of an SPD matrix."""
    evals, evecs = torch.linalg.eigh(a)
    root = evals.sqrt()
    return (evecs * root) @ evecs.T, (evecs / root) @ evecs.T


def _check_eps(eps: float) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (math.isfinite(eps) and eps > 0):
        raise ArgumentError(f"eps must be a finite number > 0 (the Brownian reference's variance); got {eps!r}")
    return float(eps)


def _check_spd(cov: Tensor, name: str, d: int) -> Tensor:
    if cov.shape != (d, d):
        raise ArgumentError(f"{name} must have shape ({d}, {d}); got {tuple(cov.shape)}")
    if not torch.allclose(cov, cov.T, atol=1e-8 * float(cov.abs().max()) + 1e-12):
        raise ArgumentError(f"{name} must be symmetric")
    if float(torch.linalg.eigvalsh(cov).min()) <= 0:
        raise ArgumentError(f"{name} must be positive definite")
    return cov


@dataclass(frozen=True)
class ConditionalGaussian:
    """A batch of Gaussians sharing one covariance: means (B, d), covariance (d, d)."""

    mean: Tensor
    cov: Tensor


class GaussianBridge:
    r"""The exact Schrödinger bridge between :math:`N(m_0, \Sigma_0)` and :math:`N(m_1, \Sigma_1)`.

    All matrices are kept in float64; methods return tensors in the dtype of their input ``x``
    (or float64).

    Args:
        mean0: source mean (d,).
        cov0: source covariance (d, d).
        mean1: target mean (d,).
        cov1: target covariance (d, d).
        eps: variance of the Brownian reference (entropic regularisation for the cost ½|x−y|²).

    Attributes:
        cross_covariance: :math:`C = \operatorname{Cov}(X_0, X_1)` of the optimal plan.

    Raises:
        ValueError: for ``eps <= 0``, shape mismatches or covariances that are not SPD.
    """

    def __init__(self, mean0: Tensor, cov0: Tensor, mean1: Tensor, cov1: Tensor, eps: float) -> None:
        self.eps = _check_eps(eps)
        m0, m1 = (torch.as_tensor(m, dtype=torch.float64) for m in (mean0, mean1))
        if m0.ndim != 1 or m1.shape != m0.shape:
            raise ArgumentError(f"mean0 and mean1 must be vectors of one dimension; got {tuple(m0.shape)} and {tuple(m1.shape)}")
        d = m0.shape[0]
        s0 = _check_spd(torch.as_tensor(cov0, dtype=torch.float64), "cov0", d)
        s1 = _check_spd(torch.as_tensor(cov1, dtype=torch.float64), "cov1", d)
        self.dim, self.mean0, self.mean1, self.cov0, self.cov1 = d, m0, m1, s0, s1
        root0, inv_root0 = _sym_sqrt(s0)
        eye = torch.eye(d, dtype=torch.float64)
        big_d, _ = _sym_sqrt(4 * root0 @ s1 @ root0 + self.eps**2 * eye)
        self.cross_covariance = 0.5 * (root0 @ big_d @ inv_root0 - self.eps * eye)
        # y | x = m1 + gain (x - m0) + N(0, cond_cov)
        self._gain = torch.linalg.solve(s0, self.cross_covariance).T  # C^T Sigma0^{-1}
        cond = s1 - self._gain @ self.cross_covariance
        self._cond_cov = 0.5 * (cond + cond.T)
        self._cond_chol = torch.linalg.cholesky(self._cond_cov)
        self._chol0 = torch.linalg.cholesky(s0)

    # ------------------------------------------------------------------ the plan
    def joint_covariance(self) -> Tensor:
        """(2d, 2d) covariance of :math:`(X_0, X_1)` under the optimal plan."""
        c = self.cross_covariance
        return torch.cat([torch.cat([self.cov0, c], 1), torch.cat([c.T, self.cov1], 1)], 0)

    def conditional(self, x: Tensor) -> ConditionalGaussian:
        r""":math:`\pi(y\mid x) = N(m_1 + C^\top\Sigma_0^{-1}(x - m_0),\ \Sigma_1 - C^\top\Sigma_0^{-1}C)`."""
        like = dict(dtype=x.dtype, device=x.device)
        mean = self.mean1.to(**like) + (x - self.mean0.to(**like)) @ self._gain.T.to(**like)
        return ConditionalGaussian(mean=mean, cov=self._cond_cov.to(**like))

    def sample_conditional(self, x: Tensor, *, generator: RandomSource = None) -> Tensor:
        """Draws :math:`y \\sim \\pi(\\cdot\\mid x)` for each row of ``x``."""
        cond = self.conditional(x)
        return cond.mean + randn_like(x, generator=generator) @ self._cond_chol.T.to(x)

    def sample_source(self, n: int, *, generator: RandomSource = None, dtype: torch.dtype = torch.float64) -> Tensor:
        """``n`` draws of :math:`X_0`."""
        z = randn((n, self.dim), generator=generator, dtype=torch.float64)
        return (self.mean0 + z @ self._chol0.T).to(dtype)

    def sample_target(self, n: int, *, generator: RandomSource = None, dtype: torch.dtype = torch.float64) -> Tensor:
        """``n`` draws of :math:`X_1` (through the plan, so they are exact)."""
        return self.sample_plan(n, generator=generator, dtype=dtype)[1]

    def sample_plan(
        self, n: int, *, generator: RandomSource = None, dtype: torch.dtype = torch.float64
    ) -> tuple[Tensor, Tensor]:
        """``n`` pairs :math:`(X_0, X_1)` from the optimal plan."""
        x0 = self.sample_source(n, generator=generator)
        return x0.to(dtype), self.sample_conditional(x0, generator=generator).to(dtype)

    def log_prob_conditional(self, y: Tensor, x: Tensor) -> Tensor:
        r""":math:`\log\pi(y\mid x)` for paired rows."""
        cond = self.conditional(x)
        chol = self._cond_chol.to(y)
        white = torch.linalg.solve_triangular(chol, (y - cond.mean).T, upper=False)
        logdet = 2 * torch.log(chol.diagonal()).sum()
        return -0.5 * ((white**2).sum(0) + logdet + self.dim * math.log(2 * math.pi))

    # ------------------------------------------------------------------ the bridge
    def marginal(self, t: float) -> tuple[Tensor, Tensor]:
        r"""Mean and covariance of :math:`X_t`:
        :math:`(1-t)^2\Sigma_0 + t^2\Sigma_1 + t(1-t)(C + C^\top + \varepsilon I)`."""
        check_unit_interval(t)
        t = float(t)
        c = self.cross_covariance
        eye = torch.eye(self.dim, dtype=torch.float64)
        cov = (1 - t) ** 2 * self.cov0 + t**2 * self.cov1 + t * (1 - t) * (c + c.T + self.eps * eye)
        return (1 - t) * self.mean0 + t * self.mean1, cov

    def _drift_coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(A_t, c_t)`` with :math:`b(x, t) = A_t x + c_t`, for times ``t`` (T,) in float64."""
        c, eye = self.cross_covariance, torch.eye(self.dim, dtype=torch.float64)
        tt = t[:, None, None]
        cov_t = (1 - tt) ** 2 * self.cov0 + tt**2 * self.cov1 + tt * (1 - tt) * (c + c.T + self.eps * eye)
        gamma = (1 - tt) * c.T + tt * self.cov1  # Cov(X_1, X_t)
        gain = torch.linalg.solve(cov_t, gamma.transpose(-1, -2)).transpose(-1, -2)  # gamma cov_t^{-1}
        mean_t = (1 - t[:, None]) * self.mean0 + t[:, None] * self.mean1
        a = (gain - eye) / (1 - tt)
        offset = (self.mean1 - mean_t - (gain @ mean_t[..., None])[..., 0] + mean_t) / (1 - t[:, None])
        return a, offset

    def drift(self, x: Tensor, t: Tensor | float) -> Tensor:
        r"""The bridge SDE drift :math:`b(x, t) = (E[X_1\mid X_t = x] - x)/(1 - t)` for :math:`t < 1`."""
        t = as_time(t, x)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ArgumentError(f"x must have shape (B, {self.dim}); got shape {tuple(x.shape)}")
        if t.device.type == "cpu" and bool((t >= 1).any()):
            raise ArgumentError("GaussianBridge.drift is singular at t = 1 (the bridge is pinned); use t < 1")
        a, offset = self._drift_coefficients(t.reshape(-1).to("cpu", torch.float64))  # sync-ok: tiny d x d solve
        a, offset = a.to(x), offset.to(x)
        return torch.einsum("bij,bj->bi", a.expand(x.shape[0], -1, -1), x) + offset.expand(x.shape[0], -1)

    def field(self) -> "GaussianBridgeField":
        """The exact drift as a :class:`~flowbridge.bridges.BridgeField` (``solver="bridge_euler_maruyama"``)."""
        return GaussianBridgeField(self)


class GaussianBridgeField(BridgeField):
    """The exact drift of a :class:`GaussianBridge` as a bridge field (``solver="bridge_euler_maruyama"``)."""

    def __init__(self, bridge: GaussianBridge) -> None:
        super().__init__(bridge.eps)
        self.bridge = bridge

    def drift(self, x: Tensor, t: Tensor | float) -> Tensor:
        return self.bridge.drift(x, t)


# ---------------------------------------------------------------------------------------------
# the entropic-OT benchmark pairs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MixtureConditional:
    """A batch of Gaussian mixtures: logits (B, K), means (B, K, d), shared covariances (K, d, d)."""

    logits: Tensor
    means: Tensor
    covs: Tensor


def _random_spd(d: int, g: torch.Generator, low: float, high: float) -> Tensor:
    """A random SPD matrix with eigenvalues log-uniform in [low, high] and a random eigenbasis."""
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    u = torch.rand(d, generator=g, dtype=torch.float64)
    evals = torch.exp(math.log(low) + u * (math.log(high) - math.log(low)))
    return (q * evals) @ q.T


class EOTBenchmarkPair:
    r"""A source/target pair with a known entropic-OT plan (the construction of Gushchin et al. 2023).

    :math:`P_0` is a Gaussian mixture with ``n_source_components`` components, means
    :math:`\sim N(0, 2^2 I)` and random covariances (eigenvalues in [0.1, 1]); the plan's
    potential mixture has ``n_components`` components with means :math:`\sim N(0, 2^2 I)` and
    covariances with eigenvalues in [0.1, 1]. Everything is drawn from ``seed`` alone.

    Args:
        dim: dimension ``d``.
        eps: variance of the Brownian reference.
        seed: seed of the construction.
        n_source_components: components of :math:`P_0`.
        n_components: components :math:`K` of the plan's potential (LightSB with ``K`` full
            potentials can represent the plan exactly).

    Raises:
        ValueError: for ``eps <= 0`` or non-positive sizes.
    """

    def __init__(self, dim: int, eps: float, seed: int = 0, n_source_components: int = 3, n_components: int = 5) -> None:
        for name, value in (("dim", dim), ("n_source_components", n_source_components), ("n_components", n_components)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ArgumentError(f"{name} must be a positive integer; got {value!r}")
        self.dim, self.eps, self.seed = dim, _check_eps(eps), int(seed)
        g = torch.Generator().manual_seed(self.seed)
        f64 = torch.float64
        src_w = torch.softmax(torch.randn(n_source_components, generator=g, dtype=f64) * 0.3, 0)
        src_means = 2 * torch.randn(n_source_components, dim, generator=g, dtype=f64)
        src_covs = torch.stack([_random_spd(dim, g, 0.1, 1.0) for _ in range(n_source_components)])
        self.source = GaussianMixture(src_w, src_means, src_covs)
        self.weights = torch.softmax(torch.randn(n_components, generator=g, dtype=f64) * 0.3, 0)
        self.means = 2 * torch.randn(n_components, dim, generator=g, dtype=f64)
        self.covs = torch.stack([_random_spd(dim, g, 0.1, 1.0) for _ in range(n_components)])
        eye = torch.eye(dim, dtype=f64)
        precision = torch.linalg.inv(self.covs) + eye / self.eps
        self._cond_covs = torch.linalg.inv(precision)
        self._cond_covs = 0.5 * (self._cond_covs + self._cond_covs.transpose(-1, -2))
        self._cond_chol = torch.linalg.cholesky(self._cond_covs)
        # pi(y|x) mean = P^{-1}(Sigma^{-1} mu + x/eps) = base_k + gain_k x
        self._cond_base = torch.einsum("kij,kj->ki", self._cond_covs, torch.linalg.solve(self.covs, self.means))
        self._cond_gain = self._cond_covs / self.eps
        self._weight_mixture = GaussianMixture(self.weights, self.means, self.covs + self.eps * eye)
        self._target_variance: float | None = None

    def __repr__(self) -> str:
        return f"EOTBenchmarkPair(dim={self.dim}, eps={self.eps}, seed={self.seed})"

    def sample_source(self, n: int, *, generator: RandomSource = None, dtype: torch.dtype = torch.float64) -> Tensor:
        """``n`` draws of :math:`X_0 \\sim P_0`."""
        return self.source.sample(n, generator=generator).to(dtype)

    def conditional(self, x: Tensor) -> MixtureConditional:
        r"""The exact :math:`\pi(\cdot\mid x)` for sources ``x`` (B, d) as a :class:`MixtureConditional`."""
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ArgumentError(f"x must have shape (B, {self.dim}); got {tuple(x.shape)}")
        x64 = x.to(torch.float64)
        logits = self._weight_mixture.component_log_prob(x64)  # log p_k + log N(x | mu_k, Sigma_k + eps I)
        means = self._cond_base + torch.einsum("kij,bj->bki", self._cond_gain, x64)
        return MixtureConditional(logits=logits.to(x.dtype), means=means.to(x.dtype), covs=self._cond_covs.to(x.dtype))

    def conditional_moments(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean (B, d) and covariance (B, d, d) of the exact conditionals."""
        from flowbridge.metrics.bridges import (
            mixture_moments,  # lazy: flowbridge.metrics imports POT
        )

        cond = self.conditional(x)
        return mixture_moments(cond.logits, cond.means, cond.covs)

    def sample_conditional(self, x: Tensor, *, generator: RandomSource = None) -> Tensor:
        """Draws :math:`y\\sim\\pi(\\cdot\\mid x)` for each row of ``x`` (Gumbel-max component choice)."""
        cond = self.conditional(x.to(torch.float64))
        u = rand(cond.logits.shape, generator=generator, dtype=torch.float64)
        k = torch.argmax(cond.logits - torch.log(-torch.log(u.clamp_min(1e-300))), dim=-1)
        z = randn((x.shape[0], self.dim), generator=generator, dtype=torch.float64)
        y = cond.means[torch.arange(x.shape[0]), k] + torch.einsum("bij,bj->bi", self._cond_chol[k], z)
        return y.to(x.dtype)

    def sample_plan(
        self, n: int, *, generator: RandomSource = None, dtype: torch.dtype = torch.float64
    ) -> tuple[Tensor, Tensor]:
        """``n`` pairs from the optimal plan."""
        x0 = self.sample_source(n, generator=generator)
        return x0.to(dtype), self.sample_conditional(x0, generator=generator).to(dtype)

    def sample_target(self, n: int, *, generator: RandomSource = None, dtype: torch.dtype = torch.float64) -> Tensor:
        """``n`` draws of :math:`X_1 \\sim P_1` (through the plan)."""
        return self.sample_plan(n, generator=generator, dtype=dtype)[1]

    def target_variance(self, n: int = 200_000) -> float:
        r""":math:`\operatorname{tr}\operatorname{Cov}(Y)` (Monte Carlo over ``n`` sources of the law of
        total variance, with the exact conditional moments; fixed seed, cached)."""
        if self._target_variance is None:
            x = self.sample_source(n, generator=torch.Generator().manual_seed(self.seed + 1))
            mean, cov = self.conditional_moments(x)
            within = cov.diagonal(dim1=-2, dim2=-1).sum(-1).mean()
            between = mean.var(0).sum()
            self._target_variance = float(within + between)
        return self._target_variance
