r"""Euler–Maruyama for the marginal-preserving reverse SDE of a Gaussian path or an interpolant.

For any :math:`\epsilon(t) \ge 0` the SDE :math:`dx = (u + \epsilon\,\nabla\log p_t)\,dt +
\sqrt{2\epsilon}\,dW` has the same marginals as the probability-flow ODE (the added diffusion
:math:`\epsilon\Delta p` and drift :math:`-\nabla\cdot(\epsilon p\nabla\log p)` cancel in the
Fokker–Planck equation). On a Gaussian path the natural level is that of the diffusion that made the
path, :math:`\epsilon(t) = \sigma^2\dot\lambda` (the DDPM reverse SDE); on a stochastic interpolant
the default is :math:`\epsilon = \gamma(t)` (see :mod:`flowbridge.samplers.sde.common`);
``noise_scale`` multiplies either (0 gives the ODE).

The step is :math:`x_{i+1} = x_i + h_i\,(u + \epsilon_i s)(x_i, t_i) + \sqrt{2\epsilon_i h_i}\,\xi_i`.
The noise is additive (it does not depend on ``x``), so Euler–Maruyama is also Milstein here and
converges with strong order 1 (weak order 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from flowbridge.fields.base import Field
from flowbridge.random import RandomSource
from flowbridge.samplers.base import Solver, register_solver
from flowbridge.samplers.sde.common import (
    BrownianPath,
    EpsFn,
    StepNoise,
    check_eps_callable,
    check_noise_scale,
    check_score_field,
    diffusion_levels,
    natural_eps,
    step_normal,
)

__all__ = ["EulerMaruyama", "SDEGridState", "diffusion_levels", "natural_eps"]


@dataclass(frozen=True)
class SDEGridState:
    """Grid, step sizes and the diffusion level at each step's start, on the state's device."""

    t: Tensor
    h: Tensor
    eps: Tensor
    noise_std: Tensor
    noise: StepNoise


class ReverseSDESolver(Solver[SDEGridState]):
    """Base of the fixed-step samplers of :math:`dx = (u + \\epsilon s)dt + \\sqrt{2\\epsilon}dW`.

    Args:
        noise_scale: multiplier of the default diffusion level.
        eps: a callable ``eps(t)`` (float64 tensor in, tensor out) overriding ``noise_scale``.
    """

    stochastic = True

    def __init__(self, noise_scale: float = 1.0, eps: EpsFn | None = None) -> None:
        check_eps_callable(eps)
        self.noise_scale, self.eps = check_noise_scale(noise_scale), eps

    def check(self, field: Field, steps: int) -> None:
        super().check(field, steps)
        check_score_field(field, self.name)

    def init(
        self, field: Field, x: Tensor, grid: Tensor, *, generator: RandomSource | BrownianPath = None
    ) -> SDEGridState:
        levels = diffusion_levels(field, grid, self.noise_scale, self.eps, self.name)
        grid64 = grid.to(torch.float64)
        h = grid64[1:] - grid64[:-1]
        like = dict(device=x.device, dtype=x.dtype)
        return SDEGridState(
            t=grid64.to(**like), h=h.to(**like), eps=levels.to(**like), noise_std=torch.sqrt(2 * levels * h).to(**like),
            noise=StepNoise(times=tuple(float(v) for v in grid64)),  # CPU grid: no device sync
        )


@register_solver("euler_maruyama")
class EulerMaruyama(ReverseSDESolver):
    """Euler–Maruyama on the reverse SDE (strong order 1 for this additive noise, weak order 1).

    Works on Gaussian paths and on stochastic interpolants whose field has a denoiser.

    Args:
        noise_scale: multiplier of the default diffusion level.
        eps: a callable ``eps(t)`` overriding ``noise_scale``.
    """

    order = 1.0

    def step(
        self, field: Field, x: Tensor, state: SDEGridState, i: int, *, generator: RandomSource | BrownianPath = None
    ) -> tuple[Tensor, SDEGridState]:
        drift = field.sde_drift(x, state.t[i], state.eps[i])
        return x + state.h[i] * drift + state.noise_std[i] * step_normal(x, state.noise, i, generator), state
