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

from flowbridge._utils import TimePoint
from flowbridge.fields.base import Field
from flowbridge.random import RandomSource
from flowbridge.samplers.base import GaussianTransition, Solver, prepare_times, register_solver
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
    """The step starts as :class:`~flowbridge._utils.TimePoint` s; step sizes, diffusion levels and
    noise scales as Python floats (kernel arguments)."""

    t: tuple[TimePoint, ...]
    h: tuple[float, ...]
    eps: tuple[float, ...]
    noise_std: tuple[float, ...]
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
        grid64 = grid.detach().to("cpu", torch.float64)
        h = grid64[1:] - grid64[:-1]
        return SDEGridState(  # sync-ok: CPU float64 grid, before the loop
            t=prepare_times(self.name, field, grid64[:-1], x, evaluates=("sde_drift",)),
            h=tuple(h.tolist()), eps=tuple(levels.tolist()), noise_std=tuple(torch.sqrt(2 * levels * h).tolist()),
            noise=StepNoise(times=tuple(grid64.tolist())),
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
    gaussian_transition = True

    def transition(self, field: Field, x: Tensor, state: SDEGridState, i: int) -> GaussianTransition:
        """Mean :math:`x + h(u + \\epsilon s)`, standard deviation :math:`\\sqrt{2\\epsilon h}`."""
        drift = field.sde_drift(x, state.t[i], state.eps[i])
        return GaussianTransition(torch.add(x, drift, alpha=state.h[i]), state.noise_std[i], state)

    def step(
        self, field: Field, x: Tensor, state: SDEGridState, i: int, *, generator: RandomSource | BrownianPath = None
    ) -> tuple[Tensor, SDEGridState]:
        tr = self.transition(field, x, state, i)
        return tr.mean.add_(step_normal(x, state.noise, i, generator), alpha=tr.std), tr.state
