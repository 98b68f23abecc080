r"""DDPM ancestral sampling (Ho et al. 2020) with DDIM's :math:`\eta` (Song et al. 2021), any Gaussian path.

A step from :math:`t` to :math:`t' > t` draws from the forward posterior
:math:`q(x_{t'} \mid x_t, x_1)` with the data replaced by its prediction :math:`\hat x_1 = E[x_1|x_t]`.
In flowbridge's convention that posterior has variance
:math:`c^2 = \sigma_{t'}^2(1 - \rho^2)`, :math:`\rho = e^{-(\lambda_{t'} - \lambda_t)}`, and

.. math::
    x_{t'} = \alpha_{t'}\hat x_1 + \sqrt{\sigma_{t'}^2 - c_\eta^2}\;\hat x_0 + c_\eta\,\xi,
    \qquad c_\eta = \eta\,c,\quad \hat x_0 = (x_t - \alpha_t\hat x_1)/\sigma_t,

i.e. :math:`x_{t'} = A x_t + B \hat x_1 + c_\eta \xi` with :math:`A = \sqrt{\sigma_{t'}^2 - c_\eta^2}/\sigma_t`
and :math:`B = \alpha_{t'} - A\alpha_t`. ``eta = 1`` is DDPM's ancestral sampler, ``eta = 0`` is DDIM
(deterministic). One field evaluation per step; weak order 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError
from flowbridge._utils import TimePoint
from flowbridge.fields.base import Field
from flowbridge.random import RandomSource
from flowbridge.samplers.base import GaussianTransition, Solver, combine, prepare_times, register_solver
from flowbridge.samplers.sde.common import BrownianPath, StepNoise, check_score_field, step_normal
from flowbridge.samplers.sde.exponential import step_schedule


@dataclass(frozen=True)
class AncestralState:
    """Per-step coefficients of ``x' = A x + B x1_hat + C xi`` as Python floats, and the step starts."""

    t: tuple[TimePoint, ...]
    a: tuple[float, ...]
    b: tuple[float, ...]
    c: tuple[float, ...]
    noise: StepNoise


@register_solver("ddpm_ancestral")
class DDPMAncestral(Solver[AncestralState]):
    """DDPM ancestral sampler (``eta = 1``) / DDIM with stochasticity ``eta`` in [0, 1].

    Args:
        eta: fraction of the posterior standard deviation injected as fresh noise.
    """

    order = 1.0
    stochastic = True
    needs_gaussian_path = True
    gaussian_transition = True

    def __init__(self, eta: float = 1.0) -> None:
        if not isinstance(eta, (int, float)) or not 0.0 <= eta <= 1.0:
            raise ArgumentError(f"eta must lie in [0, 1] (1 = DDPM ancestral, 0 = DDIM); got {eta}")
        self.eta = float(eta)

    def check(self, field: Field, steps: int) -> None:
        super().check(field, steps)
        check_score_field(field, self.name)

    def init(
        self, field: Field, x: Tensor, grid: Tensor, *, generator: RandomSource | BrownianPath = None
    ) -> AncestralState:
        s = step_schedule(field, grid, self.name)
        c = self.eta * s.sigma_t * torch.sqrt(1 - s.rho**2)
        a = torch.sqrt((s.sigma_t**2 - c**2).clamp_min(0.0)) / s.sigma_s
        b = s.alpha_t - a * s.alpha_s
        grid64 = grid.detach().to("cpu", torch.float64)
        return AncestralState(  # sync-ok: CPU float64 coefficients, before the loop
            t=prepare_times(self.name, field, grid64[:-1], x, evaluates=("data",)),
            a=tuple(a.tolist()), b=tuple(b.tolist()), c=tuple(c.tolist()),
            noise=StepNoise(times=tuple(grid64.tolist())),
        )

    def transition(self, field: Field, x: Tensor, state: AncestralState, i: int) -> GaussianTransition:
        """Mean :math:`A x + B\\hat x_1`, standard deviation :math:`C`."""
        x1_hat = field.data(x, state.t[i])
        return GaussianTransition(combine(x, state.a[i], (state.b[i],), (x1_hat,)), state.c[i], state)

    def step(
        self, field: Field, x: Tensor, state: AncestralState, i: int, *, generator: RandomSource | BrownianPath = None
    ) -> tuple[Tensor, AncestralState]:
        tr = self.transition(field, x, state, i)
        if self.eta > 0:
            tr.mean.add_(step_normal(x, state.noise, i, generator), alpha=tr.std)
        return tr.mean, tr.state
