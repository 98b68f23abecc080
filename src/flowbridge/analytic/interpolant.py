r"""Exact drift, denoiser and score of a stochastic interpolant between two Gaussian mixtures.

For :math:`x_t = a(t)\,x_0 + b(t)\,x_1 + \gamma(t)\,z` with independent
:math:`x_0 \sim \sum_j w^0_j N(\mu^0_j, \Sigma^0_j)`, :math:`x_1 \sim \sum_k w^1_k N(\mu^1_k, \Sigma^1_k)`
and :math:`z \sim N(0, I)`, the triple :math:`(x_0, x_1, z)` is, given the component pair
:math:`(j, k)`, jointly Gaussian and :math:`x_t` is linear in it:

.. math::
    x_t \mid jk \sim N(m_{jk}, C_{jk}),\quad m_{jk} = a\mu^0_j + b\mu^1_k,\quad
    C_{jk} = a^2\Sigma^0_j + b^2\Sigma^1_k + \gamma^2 I,

with cross-covariances :math:`a\Sigma^0_j`, :math:`b\Sigma^1_k`, :math:`\gamma I`. With
:math:`v_{jk} = C_{jk}^{-1}(x - m_{jk})` and responsibilities
:math:`r_{jk} \propto w^0_j w^1_k N(x; m_{jk}, C_{jk})`,

.. math::
    E[x_0|x] = \sum r_{jk}(\mu^0_j + a\Sigma^0_j v_{jk}),\quad
    E[x_1|x] = \sum r_{jk}(\mu^1_k + b\Sigma^1_k v_{jk}),\quad
    E[z|x] = \gamma\sum r_{jk} v_{jk},\quad \nabla\log p_t = -\sum r_{jk} v_{jk}.

The drift is :math:`\dot a E[x_0|x] + \dot b E[x_1|x] + \dot\gamma E[z|x]`; its last term is
computed as :math:`\tfrac12\,\tfrac{d\gamma^2}{dt}\sum r v`, finite at the ends even where
:math:`\dot\gamma` is infinite (:math:`\gamma = \sqrt{t(1-t)}`). The score is computed directly, so
the field is regular on the closed interval whenever the end covariances are non-degenerate.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowbridge._utils import as_time, check_state
from flowbridge.analytic.mixture import GaussianMixture
from flowbridge.errors import ArgumentError
from flowbridge.fields.base import Field
from flowbridge.paths.interpolant import StochasticInterpolant


def gamma_squared_rate(interpolant: StochasticInterpolant, t: Tensor) -> Tensor:
    r""":math:`d\gamma(t)^2/dt`, in closed form for the built-in shapes (finite at the ends)."""
    c2 = interpolant.gamma_scale**2
    if interpolant.gamma == "sqrt":
        return c2 * (1 - 2 * t)
    if interpolant.gamma == "quadratic":
        return 2 * c2 * t * (1 - t) * (1 - 2 * t)
    if interpolant.gamma == "sin2":
        return 4 * math.pi * c2 * torch.sin(math.pi * t) ** 3 * torch.cos(math.pi * t)
    co = interpolant.coefficients(t, t.reshape(-1, 1) if t.ndim else t)
    return (2 * co.gamma * co.d_gamma).reshape(t.shape)


class GaussianMixtureInterpolantField(Field):
    """Exact field of the interpolant between two :class:`GaussianMixture` s (same dimension).

    Exposes ``velocity`` (the drift), ``denoise`` (:math:`E[z|x_t]`), ``score``, ``sde_drift``,
    the posterior means ``source_mean``/``target_mean`` and ``log_prob``. Inputs (B, d); ``t`` a
    scalar or per-sample (B,).

    Args:
        source: the mixture at ``t = 0``.
        target: the mixture at ``t = 1``.
        interpolant: the :class:`StochasticInterpolant` (default: Brownian-bridge ``gamma``).
    """

    def __init__(self, source: GaussianMixture, target: GaussianMixture, interpolant: StochasticInterpolant | None = None) -> None:
        interpolant = interpolant if interpolant is not None else StochasticInterpolant()
        if not isinstance(source, GaussianMixture) or not isinstance(target, GaussianMixture):
            raise ArgumentError(
                f"source and target must be GaussianMixture; got {type(source).__name__}, {type(target).__name__}"
            )
        if source.dim != target.dim:
            raise ArgumentError(f"source and target must have the same dimension; got {source.dim} and {target.dim}")
        super().__init__(interpolant, "velocity")
        self.source, self.target, self.interpolant = source, target, interpolant

    def _flat(self, x: Tensor) -> Tensor:
        check_state(x)
        if x.ndim < 2 or math.prod(x.shape[1:]) != self.source.dim:
            raise ArgumentError(f"x must have {self.source.dim} features per sample; got shape {tuple(x.shape)}")
        if x.dtype in (torch.float16, torch.bfloat16):
            raise ArgumentError(f"x must be float32 or float64 (Cholesky has no half-precision kernel); got dtype {x.dtype}")
        return x.reshape(x.shape[0], self.source.dim)

    def _posterior(self, x: Tensor, t: Tensor | float) -> dict[str, Tensor]:
        """Responsibility-weighted conditionals at (x, t): ``x0``, ``x1``, ``v`` (=-score), ``log_p``."""
        flat = self._flat(x)
        # Solvers' stage times can round a hair outside [0, 1], where gamma = sqrt(t(1-t)) is NaN.
        tt = as_time(t, flat).clamp(0.0, 1.0)
        s, q = self.source, self.target
        w0, mu0, cov0 = s.weights.to(flat), s.means.to(flat), s.covs.to(flat)
        w1, mu1, cov1 = q.weights.to(flat), q.means.to(flat), q.covs.to(flat)
        j, k, d = mu0.shape[0], mu1.shape[0], flat.shape[1]
        co = self.interpolant.coefficients(tt, flat)
        a, b, g = (c.reshape(-1, 1, 1, 1) for c in (co.a, co.b, co.gamma))  # (Bt, 1, 1, 1)
        eye = torch.eye(d, dtype=flat.dtype, device=flat.device)
        # Pair (j, k) -> index j * K + k.
        cov0_p = cov0[:, None].expand(j, k, d, d).reshape(j * k, d, d)
        cov1_p = cov1[None].expand(j, k, d, d).reshape(j * k, d, d)
        mu0_p = mu0[:, None].expand(j, k, d).reshape(j * k, d)
        mu1_p = mu1[None].expand(j, k, d).reshape(j * k, d)
        log_w = (torch.log(w0)[:, None] + torch.log(w1)[None]).reshape(j * k)
        cov = a * a * cov0_p + b * b * cov1_p + g * g * eye  # (Bt, JK, d, d)
        # No error check: a NaN time then propagates instead of raising from inside LAPACK, and
        # reading `info` would be a host sync.
        chol = torch.linalg.cholesky_ex(cov).L
        mean = a[..., 0] * mu0_p + b[..., 0] * mu1_p  # (Bt, JK, d)
        delta = flat[:, None, :] - mean  # (B, JK, d)
        if chol.shape[0] == 1:
            # One time for the whole batch: one factorisation per pair, all samples as right-hand sides.
            v = torch.cholesky_solve(delta.permute(1, 2, 0), chol[0]).permute(2, 0, 1)
        else:
            v = torch.cholesky_solve(delta[..., None], chol)[..., 0]
        log_det = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)  # (Bt, JK)
        log_p = log_w - 0.5 * (delta * v).sum(-1) - 0.5 * log_det - 0.5 * d * math.log(2 * math.pi)
        r = torch.softmax(log_p, dim=-1)[..., None]  # (B, JK, 1)
        rv = (r * v).sum(1)
        x0 = (r * (mu0_p + a[..., 0] * torch.einsum("pij,bpj->bpi", cov0_p, v))).sum(1)
        x1 = (r * (mu1_p + b[..., 0] * torch.einsum("pij,bpj->bpi", cov1_p, v))).sum(1)
        return {"x0": x0, "x1": x1, "rv": rv, "log_p": torch.logsumexp(log_p, dim=-1), "t": tt}

    def _drift(self, post: dict[str, Tensor]) -> Tensor:
        tt = post["t"]
        co = self.interpolant.coefficients(tt, post["x0"])
        rate = gamma_squared_rate(self.interpolant, tt)
        rate = rate.reshape(-1, 1) if rate.ndim else rate
        return co.d_a * post["x0"] + co.d_b * post["x1"] + 0.5 * rate * post["rv"]

    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        return self.velocity(x, t)

    def velocity(self, x: Tensor, t: Tensor) -> Tensor:
        """The exact drift :math:`b(x, t)`."""
        return self._drift(self._posterior(x, t)).reshape(x.shape)

    def denoise(self, x: Tensor, t: Tensor) -> Tensor:
        """:math:`E[z | x_t = x]`."""
        post = self._posterior(x, t)
        co = self.interpolant.coefficients(post["t"], post["rv"])
        return (co.gamma * post["rv"]).reshape(x.shape)

    def score(self, x: Tensor, t: Tensor) -> Tensor:
        return (-self._posterior(x, t)["rv"]).reshape(x.shape)

    def sde_drift(self, x: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        post = self._posterior(x, t)
        eps = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
        eps_flat = eps.reshape(eps.shape[0], -1)[:, :1] if eps.ndim else eps
        return (self._drift(post) - eps_flat * post["rv"]).reshape(x.shape)

    def source_mean(self, x: Tensor, t: Tensor) -> Tensor:
        """:math:`E[x_0 | x_t = x]`."""
        return self._posterior(x, t)["x0"].reshape(x.shape)

    def target_mean(self, x: Tensor, t: Tensor) -> Tensor:
        """:math:`E[x_1 | x_t = x]`."""
        return self._posterior(x, t)["x1"].reshape(x.shape)

    def log_prob(self, x: Tensor, t: Tensor | float) -> Tensor:
        """Exact log density of the interpolant's marginal at time ``t``."""
        return self._posterior(x, t)["log_p"]
