r"""Euler–Maruyama for the marginal-preserving reverse SDE of a Gaussian path.

For any :math:`\epsilon(t) \ge 0` the SDE :math:`dx = (u + \epsilon\,\nabla\log p_t)\,dt +
\sqrt{2\epsilon}\,dW` has the same marginals as the probability-flow ODE (the added diffusion
:math:`\epsilon\Delta p` and drift :math:`-\nabla\cdot(\epsilon p\nabla\log p)` cancel in the
Fokker–Planck equation). The natural level is that of the diffusion that made the path,
:math:`\epsilon(t) = \sigma^2\dot\lambda` (the DDPM reverse SDE); ``noise_scale`` multiplies it
(0 gives the ODE).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from flowbridge.fields.base import Field
from flowbridge.random import RandomSource, randn_like
from flowbridge.samplers.base import Solver, register_solver


@dataclass(frozen=True)
class SDEGridState:
    """Grid, step sizes and the diffusion level at each step's start, on the state's device."""

    t: Tensor
    h: Tensor
    eps: Tensor
    noise_std: Tensor


def natural_eps(field: Field, t: Tensor) -> Tensor:
    r""":math:`\epsilon(t) = \sigma(t)^2\,\dot\lambda(t)`, the diffusion level of the forward noising."""
    sched = field.gaussian_path.schedule
    return sched(t).sigma ** 2 * sched.d_log_snr(t)


def diffusion_levels(
    field: Field, grid: Tensor, noise_scale: float, eps: Callable[[Tensor], Tensor] | None, solver: str
) -> Tensor:
    """``eps`` on the grid's left points (float64 CPU), validated: finite and non-negative."""
    left = grid[:-1]
    levels = eps(left) if eps is not None else noise_scale * natural_eps(field, left)
    levels = torch.as_tensor(levels, dtype=torch.float64).expand_as(left)
    if not torch.isfinite(levels).all():
        raise ValueError(
            f"{solver}: the diffusion level eps(t) is not finite on the grid (at t={float(left[~torch.isfinite(levels)][0]):.3g}); "
            "start later (t_span=(1e-3, ...)) or pass eps=callable"
        )
    if (levels < 0).any():
        raise ValueError(f"{solver}: the diffusion level eps(t) must be >= 0; got min {float(levels.min()):.3g}")
    return levels


@register_solver("euler_maruyama")
class EulerMaruyama(Solver[SDEGridState]):
    """Euler–Maruyama on the reverse SDE (strong order 1/2, weak order 1).

    Args:
        noise_scale: multiplier of the natural diffusion level :math:`\\sigma^2\\dot\\lambda`.
        eps: a callable ``eps(t)`` (float64 tensor in, tensor out) overriding ``noise_scale``.
    """

    order = 0.5
    stochastic = True
    needs_gaussian_path = True

    def __init__(self, noise_scale: float = 1.0, eps: Callable[[Tensor], Tensor] | None = None) -> None:
        if not noise_scale >= 0:
            raise ValueError(f"noise_scale must be >= 0; got {noise_scale}")
        self.noise_scale, self.eps = float(noise_scale), eps

    def init(self, field: Field, x: Tensor, grid: Tensor, *, generator: RandomSource = None) -> SDEGridState:
        levels = diffusion_levels(field, grid, self.noise_scale, self.eps, self.name)
        h = grid[1:] - grid[:-1]
        like = dict(device=x.device, dtype=x.dtype)
        return SDEGridState(
            t=grid.to(**like), h=h.to(**like), eps=levels.to(**like), noise_std=torch.sqrt(2 * levels * h).to(**like)
        )

    def step(
        self, field: Field, x: Tensor, state: SDEGridState, i: int, *, generator: RandomSource = None
    ) -> tuple[Tensor, SDEGridState]:
        drift = field.sde_drift(x, state.t[i], state.eps[i])
        return x + state.h[i] * drift + state.noise_std[i] * randn_like(x, generator=generator), state
