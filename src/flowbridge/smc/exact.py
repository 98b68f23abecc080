r"""Closed-form and quadrature ground truth for SMC targets built from Gaussian mixtures.

* :func:`noised_mixture` — the marginal :math:`p_t` of a mixture under a Gaussian path is the mixture
  :math:`\sum_k w_k N(\alpha\mu_k, \alpha^2\Sigma_k + \sigma^2 I)`.
* :func:`tilted_mixture` — :math:`p(x)\,e^{-\frac12 x^TQx + h^Tx}` for a mixture :math:`p`: completing the
  square per component, :math:`P_k = \Sigma_k^{-1} + Q`, :math:`m_k = P_k^{-1}(\Sigma_k^{-1}\mu_k + h)` and
  mass :math:`w_k\,|P_k^{-1}|^{1/2}|\Sigma_k|^{-1/2}\exp(\frac12 m_k^TP_km_k - \frac12\mu_k^T\Sigma_k^{-1}\mu_k)`.
  A quadratic reward :math:`r = -\frac12x^TAx + b^Tx` at temperature :math:`\lambda` is
  :math:`Q = A/\lambda`, :math:`h = b/\lambda`.
* :func:`mixture_product` — :math:`p^a p^b`: each pair of components multiplies to
  :math:`N(\mu_i; \nu_j, \Sigma_i + \Gamma_j)\,N(m_{ij}, (\Sigma_i^{-1} + \Gamma_j^{-1})^{-1})`.
* :class:`GridDensity` — any low-dimensional unnormalised density by quadrature on a grid: the
  normaliser, and exact draws from the piecewise-constant density (cell by inverse CDF, uniform
  position inside the cell).

All return the normalised :class:`~flowbridge.analytic.GaussianMixture` and the log normaliser.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError
from flowbridge._utils import check_unit_interval
from flowbridge.analytic.mixture import GaussianMixture
from flowbridge.paths.gaussian import GaussianPath
from flowbridge.random import RandomSource, rand


def noised_mixture(mixture: GaussianMixture, path: GaussianPath, t: float) -> GaussianMixture:
    """The marginal at time ``t`` of ``x_t = alpha x1 + sigma x0`` for ``x1 ~ mixture``.

    Raises:
        TypeError: if ``t`` is not a real number.
        ValueError: if ``t`` lies outside [0, 1] (the schedule is only defined there).
    """
    if isinstance(t, bool) or not isinstance(t, numbers.Real):
        raise ArgumentError(f"t must be a real number in [0, 1]; got {type(t).__name__}")
    check_unit_interval(float(t))
    v = path.schedule(torch.tensor(float(t), dtype=torch.float64))
    a, s = float(v.alpha), float(v.sigma)
    eye = torch.eye(mixture.dim, dtype=mixture.means.dtype, device=mixture.means.device)
    return GaussianMixture(mixture.weights, a * mixture.means, a * a * mixture.covs + s * s * eye)


@dataclass(frozen=True)
class ExactTarget:
    """A normalised mixture and :math:`\\log` of the mass of the unnormalised density it came from."""

    mixture: GaussianMixture
    log_normalizer: float


def _tilt(means: Tensor, covs: Tensor, q: Tensor, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per component (broadcast over leading dims): new means, covariances and log masses of
    :math:`\\int N(x; \\mu, \\Sigma) e^{-x^TQx/2 + h^Tx} dx`."""
    prec0 = torch.linalg.inv(covs)
    prec = prec0 + q
    evals = torch.linalg.eigvalsh(prec)
    if not bool((evals > 0).all()):
        raise ArgumentError("the tilted density is not normalisable: Sigma_k^-1 + Q must be positive definite")
    cov = torch.linalg.inv(prec)
    cov = 0.5 * (cov + cov.transpose(-1, -2))
    lin = (prec0 @ means.unsqueeze(-1)).squeeze(-1) + h
    mean = (cov @ lin.unsqueeze(-1)).squeeze(-1)
    log_mass = (
        0.5 * torch.logdet(cov) - 0.5 * torch.logdet(covs)
        + 0.5 * (mean * lin).sum(-1) - 0.5 * (means * (prec0 @ means.unsqueeze(-1)).squeeze(-1)).sum(-1)
    )
    return mean, cov, log_mass


def tilted_mixture(mixture: GaussianMixture, precision: Tensor, linear: Tensor) -> ExactTarget:
    r""":math:`p(x)\,e^{-\frac12x^TQx + h^Tx}` normalised, with :math:`\log\int p\,e^{\dots}`.

    Args:
        mixture: the prior :math:`p`.
        precision: :math:`Q`, (d, d) symmetric (``Sigma_k^-1 + Q`` must be positive definite).
        linear: :math:`h`, (d,).
    """
    like = dict(dtype=mixture.means.dtype, device=mixture.means.device)
    q, h = torch.as_tensor(precision, **like), torch.as_tensor(linear, **like)
    d = mixture.dim
    if q.shape != (d, d) or h.shape != (d,):
        raise ArgumentError(f"precision must be ({d}, {d}) and linear ({d},); got {tuple(q.shape)} and {tuple(h.shape)}")
    if not (bool(torch.isfinite(q).all()) and bool(torch.isfinite(h).all())):
        raise ArgumentError("precision and linear must be finite")
    mean, cov, log_mass = _tilt(mixture.means, mixture.covs, q, h)
    logits = torch.log(mixture.weights) + log_mass
    log_z = torch.logsumexp(logits, 0)
    return ExactTarget(GaussianMixture(torch.softmax(logits, 0), mean, cov), float(log_z))


def mixture_product(a: GaussianMixture, b: GaussianMixture) -> ExactTarget:
    r"""The normalised product :math:`p^a p^b / Z` of two mixtures and :math:`\log Z = \log\int p^a p^b`."""
    if a.dim != b.dim:
        raise ArgumentError(f"mixtures must have the same dimension; got {a.dim} and {b.dim}")
    d = a.dim
    prec_b = torch.linalg.inv(b.covs)  # (J, d, d)
    h_b = (prec_b @ b.means.unsqueeze(-1)).squeeze(-1)  # (J, d)
    # Pair (i, j): tilt component i by N(x; nu_j, Gamma_j) written as exp(-x'Qx/2 + h'x + const_j).
    mean, cov, log_mass = _tilt(a.means[:, None], a.covs[:, None], prec_b[None], h_b[None])
    const = -0.5 * (b.means * h_b).sum(-1) - 0.5 * torch.logdet(b.covs) - 0.5 * d * math.log(2 * math.pi)
    logits = torch.log(a.weights)[:, None] + torch.log(b.weights)[None] + log_mass + const[None]
    log_z = torch.logsumexp(logits.reshape(-1), 0)
    return ExactTarget(
        GaussianMixture(torch.softmax(logits.reshape(-1), 0), mean.reshape(-1, d), cov.reshape(-1, d, d)),
        float(log_z),
    )


#: Fewest cells per dimension a :class:`GridDensity` accepts: its edge check looks at the two
#: boundary cells of each axis, and its draws are only as exact as the cells are fine.
MIN_GRID_POINTS = 16


class GridDensity:
    r"""An unnormalised density on a box, tabulated at cell centres: normaliser and exact draws.

    Args:
        log_density: ``f(x) -> (M,)`` unnormalised log density at points (M, d).
        low: the box's lower corner (length d).
        high: the box's upper corner (length d); the density must be negligible outside the box
            (checked on the boundary cells: ValueError otherwise).
        points: cells per dimension, an integer >= :data:`MIN_GRID_POINTS` (a coarser grid is
            no ground truth: the piecewise-constant density's error is O(cell width^2)).

    Raises:
        TypeError: if ``points`` is not an integer.
        ValueError: if ``points`` is too small or the box is empty or cuts off mass.
    """

    def __init__(
        self, log_density: Callable[[Tensor], Tensor], low: Sequence[float], high: Sequence[float], points: int = 400
    ) -> None:
        if isinstance(points, bool) or not isinstance(points, numbers.Integral):
            raise ArgumentError(f"points (cells per dimension) must be an integer; got {points!r}")
        if points < MIN_GRID_POINTS:
            raise ArgumentError(f"points (cells per dimension) must be an integer >= {MIN_GRID_POINTS}; got {points}")
        points = int(points)
        if len(low) != len(high) or not all(h > lo for lo, h in zip(low, high)):
            raise ArgumentError(f"need low < high in every dimension; got {low}, {high}")
        if points ** len(low) > 4_000_000:
            raise ArgumentError(f"{points}^{len(low)} cells is too many for a grid; use d <= 2 or fewer points")
        self.low = torch.tensor(low, dtype=torch.float64)
        self.width = (torch.tensor(high, dtype=torch.float64) - self.low) / points
        axes = [self.low[k] + (torch.arange(points, dtype=torch.float64) + 0.5) * self.width[k] for k in range(len(low))]
        self.centres = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(low))
        log_p = log_density(self.centres).to(torch.float64)
        self.log_cell_mass = log_p + torch.log(self.width).sum()
        # Mass on the box's boundary cells: a truncated (or non-normalisable) density would make the
        # "truth" an artefact of the box.
        side = self.log_cell_mass.reshape(*([points] * len(low)))
        edge = torch.zeros_like(side, dtype=torch.bool)
        for k in range(len(low)):
            edge.index_fill_(k, torch.tensor([0, points - 1]), True)
        edge_share = float(torch.exp(torch.logsumexp(side[edge], 0) - torch.logsumexp(side.reshape(-1), 0)))
        if not edge_share < 1e-6:
            raise ArgumentError(
                f"the density is not negligible at the edge of the box (edge cells hold {edge_share:.2g} of the mass); "
                "widen the box, or check that the density is normalisable"
            )
        self.log_normalizer = float(torch.logsumexp(self.log_cell_mass, 0))
        self.cdf = torch.cumsum(torch.softmax(self.log_cell_mass, 0), 0)

    def sample(self, n: int, *, generator: RandomSource = None) -> Tensor:
        """``n`` exact draws from the piecewise-constant density, (n, d) float64."""
        u = rand((n,), generator=generator, dtype=torch.float64)
        idx = torch.searchsorted(self.cdf, u * self.cdf[-1], right=True).clamp_(max=self.cdf.shape[0] - 1)
        jitter = rand((n, self.centres.shape[1]), generator=generator, dtype=torch.float64) - 0.5
        return self.centres[idx] + jitter * self.width

    def mean(self) -> Tensor:
        """The density's mean by quadrature."""
        return torch.softmax(self.log_cell_mass, 0) @ self.centres
