r"""Stochastic interpolants between two arbitrary distributions (Albergo, Boffi, Vanden-Eijnden 2023).

.. math::
    x_t = a(t)\,x_0 + b(t)\,x_1 + \gamma(t)\,z, \qquad z \sim N(0, I),

with :math:`a(0) = b(1) = 1`, :math:`a(1) = b(0) = 0`, :math:`\gamma(0) = \gamma(1) = 0`. The drift
:math:`b(t, x) = E[\dot a x_0 + \dot b x_1 + \dot\gamma z \mid x_t = x]` transports the marginals
(it is the velocity of the probability-flow ODE); the denoiser :math:`\eta(t, x) = E[z \mid x_t = x]`
gives the score :math:`s = -\eta/\gamma`. For any :math:`\epsilon \ge 0` the SDE
:math:`dX = (b + \epsilon s)\,dt + \sqrt{2\epsilon}\,dW` has the same marginals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from flowbridge._utils import (
    as_time,
    check_state,
    check_unit_interval,
    expand_like,
    registry_error,
)
from flowbridge.errors import ArgumentError


@dataclass(frozen=True)
class InterpolantCoefficients:
    """a, b, gamma and their time derivatives at some t."""

    a: Tensor
    b: Tensor
    gamma: Tensor
    d_a: Tensor
    d_b: Tensor
    d_gamma: Tensor


@dataclass(frozen=True)
class InterpolantSample:
    """A draw from the interpolant.

    Attributes:
        x_t: the interpolated state.
        drift_target: :math:`\\dot a x_0 + \\dot b x_1 + \\dot\\gamma z`, the drift's regression target.
        z: the latent noise, the denoiser's regression target.
        t, x0, x1: as given.
    """

    x_t: Tensor
    drift_target: Tensor
    z: Tensor
    t: Tensor
    x0: Tensor
    x1: Tensor


def _gamma_sqrt(t: Tensor) -> tuple[Tensor, Tensor]:
    g = torch.sqrt(t * (1 - t))
    # d/dt sqrt(t(1-t)) = (1 - 2t) / (2 sqrt(t(1-t))) is infinite at the ends; the drift target
    # gamma' z is then infinite too, so training draws t from the open interval.
    return g, (1 - 2 * t) / (2 * g)


def _gamma_quadratic(t: Tensor) -> tuple[Tensor, Tensor]:
    return t * (1 - t), 1 - 2 * t


def _gamma_sin2(t: Tensor) -> tuple[Tensor, Tensor]:
    return torch.sin(math.pi * t) ** 2, math.pi * torch.sin(2 * math.pi * t)


GAMMAS: dict[str, Callable[[Tensor], tuple[Tensor, Tensor]]] = {
    "sqrt": _gamma_sqrt,
    "quadratic": _gamma_quadratic,
    "sin2": _gamma_sin2,
}


@dataclass(frozen=True)
class StochasticInterpolant:
    r"""The linear stochastic interpolant :math:`x_t = (1-t) x_0 + t x_1 + c\,\gamma(t) z`.

    Args:
        gamma: shape of the latent-noise coefficient: ``"sqrt"`` (:math:`\sqrt{t(1-t)}`, the
            Brownian bridge), ``"quadratic"`` (:math:`t(1-t)`) or ``"sin2"`` (:math:`\sin^2\pi t`).
        gamma_scale: the factor :math:`c \ge 0`; ``0`` is deterministic (rectified-flow) interpolation.
        t_min: lower cut-off used by samplers (where ``gamma`` or its derivative is singular).
        t_max: upper cut-off.
    """

    gamma: str = "sqrt"
    gamma_scale: float = 1.0
    t_min: float = 0.0
    t_max: float = 1.0

    def __post_init__(self) -> None:
        if self.gamma not in GAMMAS:
            raise registry_error("gamma", self.gamma, list(GAMMAS))
        if not 0 <= self.gamma_scale < math.inf:
            raise ArgumentError(f"gamma_scale must be >= 0 and finite; got {self.gamma_scale}")

    def coefficients(self, t: Tensor | float, x: Tensor) -> InterpolantCoefficients:
        """Coefficients at ``t`` reshaped to broadcast against ``x``."""
        t = expand_like(as_time(t, x), x)
        g, dg = GAMMAS[self.gamma](t)
        one = torch.ones_like(t)
        return InterpolantCoefficients(
            a=1 - t, b=t, gamma=self.gamma_scale * g, d_a=-one, d_b=one, d_gamma=self.gamma_scale * dg
        )

    def sample(self, x0: Tensor, x1: Tensor, t: Tensor, *, z: Tensor) -> InterpolantSample:
        """Interpolates at times ``t`` (B,) with latent noise ``z`` (pass ``-z`` for the antithetic draw)."""
        for name, value in (("x0", x0), ("x1", x1), ("z", z)):
            check_state(value, name)
        if x0.shape != x1.shape or z.shape != x1.shape:
            raise ArgumentError(
                f"x0, x1 and z must have the same shape; got {tuple(x0.shape)}, {tuple(x1.shape)}, {tuple(z.shape)}"
            )
        check_unit_interval(t)
        c = self.coefficients(t, x1)
        return InterpolantSample(
            x_t=c.a * x0 + c.b * x1 + c.gamma * z,
            drift_target=c.d_a * x0 + c.d_b * x1 + c.d_gamma * z,
            z=z,
            t=t,
            x0=x0,
            x1=x1,
        )

    def score_from_denoiser(self, eta: Tensor, x: Tensor, t: Tensor | float) -> Tensor:
        r""":math:`s = -\eta/\gamma`."""
        return -eta / self.coefficients(t, x).gamma


def BrownianBridge(sigma: float = 1.0, t_min: float = 0.0, t_max: float = 1.0) -> StochasticInterpolant:
    r"""The Brownian bridge :math:`x_t = (1-t)x_0 + t x_1 + \sigma\sqrt{t(1-t)}\,z` (SB-CFM, DSBM)."""
    if not 0 < sigma < math.inf:
        raise ArgumentError(f"BrownianBridge sigma must be > 0 and finite; got {sigma}")
    return StochasticInterpolant(gamma="sqrt", gamma_scale=sigma, t_min=t_min, t_max=t_max)
