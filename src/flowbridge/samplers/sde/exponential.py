r"""Step coefficients shared by the exponential integrators of a Gaussian path's reverse SDE.

With :math:`\lambda = \log(\alpha/\sigma)` and a step from :math:`t` to :math:`t' > t` (toward the
data), :math:`h = \lambda_{t'} - \lambda_t` and the ratio :math:`\rho = e^{-h} =
\alpha_t\sigma_{t'}/(\alpha_{t'}\sigma_t)` is computed from the schedule directly, so that the
ends where :math:`\lambda` is infinite (``alpha = 0`` at the source, ``sigma = 0`` at the data) give
:math:`\rho = 0` instead of ``inf - inf``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError
from flowbridge.fields.base import Field


@dataclass(frozen=True)
class StepSchedule:
    """Float64 CPU schedule values at the left (``_s``) and right (``_t``) ends of every step, and
    :math:`\\rho = e^{-h}`."""

    alpha_s: Tensor
    sigma_s: Tensor
    alpha_t: Tensor
    sigma_t: Tensor
    rho: Tensor
    h: Tensor


def step_schedule(field: Field, grid: Tensor, solver: str) -> StepSchedule:
    """Schedule values on ``grid`` (float64, CPU), checked: the grid must run toward the data and
    avoid :math:`\\sigma = 0` at any step's start."""
    g = grid.to(torch.float64)
    v = field.gaussian_path.schedule(g)
    alpha, sigma = v.alpha, v.sigma
    if not (g[1:] > g[:-1]).all():
        raise ArgumentError(f"{solver}: the grid must increase strictly (from the source t=0 toward the data t=1)")
    if (sigma[:-1] <= 0).any():
        raise ArgumentError(f"{solver}: sigma(t) must be > 0 at every step's start; end the grid's interior before t=1")
    a_s, s_s, a_t, s_t = alpha[:-1], sigma[:-1], alpha[1:], sigma[1:]
    rho = (a_s * s_t) / (a_t * s_s)
    return StepSchedule(alpha_s=a_s, sigma_s=s_s, alpha_t=a_t, sigma_t=s_t, rho=rho, h=-torch.log(rho))
