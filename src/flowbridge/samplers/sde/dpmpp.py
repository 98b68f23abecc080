r"""DPM-Solver++(2M) SDE (Lu et al. 2022; the midpoint form of k-diffusion), any Gaussian path.

With data predictions :math:`D_i = E[x_1|x_{t_i}]`, :math:`h = \lambda_{t'} - \lambda_t`,
:math:`\rho = e^{-h}` and stochasticity :math:`\eta \ge 0`:

.. math::
    x_{t'} = \frac{\sigma_{t'}}{\sigma_t}\rho^{\eta}\,x_t
      + \alpha_{t'}(1 - \rho^{1+\eta})\Big(D_i + \frac{1}{2r}(D_i - D_{i-1})\Big)
      + \sigma_{t'}\sqrt{1 - \rho^{2\eta}}\;\xi,
    \qquad r = h_{i-1}/h_i.

``eta = 1`` is the data-prediction reverse SDE solved exactly in its linear part (the first-order
step is the DDPM ancestral step); ``eta = 0`` is the deterministic DPM-Solver++(2M). The first step,
and any step next to an infinite :math:`h` (``alpha = 0`` or ``sigma = 0`` at an end), is first
order. One field evaluation per step.
"""

from __future__ import annotations

import math
import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError
from flowbridge.fields.base import Field
from flowbridge.random import RandomSource
from flowbridge._utils import TimePoint
from flowbridge.samplers.base import GaussianTransition, Solver, combine, prepare_times, register_solver
from flowbridge.samplers.sde.common import BrownianPath, StepNoise, check_score_field, step_normal
from flowbridge.samplers.sde.exponential import step_schedule


@dataclass(frozen=True)
class MultistepSDEState:
    """Coefficients ``x' = A x + B D + K (D - D_prev) + C xi`` and the previous data prediction."""

    t: tuple[TimePoint, ...]
    a: tuple[float, ...]
    b: tuple[float, ...]
    k: tuple[float, ...]
    c: tuple[float, ...]
    noise: StepNoise
    previous: Tensor | None = None


@register_solver("dpmpp_2m_sde")
class DPMSolverPP2MSDE(Solver[MultistepSDEState]):
    """DPM-Solver++(2M) SDE, midpoint variant.

    Args:
        eta: stochasticity (1 = the reverse SDE, 0 = the deterministic DPM-Solver++(2M)).
    """

    order = 1.0
    stochastic = True
    needs_gaussian_path = True
    gaussian_transition = True

    def __init__(self, eta: float = 1.0) -> None:
        if not isinstance(eta, (int, float)) or not eta >= 0:
            raise ArgumentError(f"eta must be >= 0; got {eta}")
        self.eta = float(eta)

    def check(self, field: Field, steps: int) -> None:
        super().check(field, steps)
        check_score_field(field, self.name)

    def init(
        self, field: Field, x: Tensor, grid: Tensor, *, generator: RandomSource | BrownianPath = None
    ) -> MultistepSDEState:
        s = step_schedule(field, grid, self.name)
        eta = self.eta
        rho_eta = s.rho**eta if eta > 0 else torch.ones_like(s.rho)
        a = s.sigma_t / s.sigma_s * rho_eta
        b = s.alpha_t * (1 - s.rho ** (1 + eta))
        c = s.sigma_t * torch.sqrt((1 - rho_eta**2).clamp_min(0.0))
        # The second-order term b / (2r) with r = h_{i-1}/h_i; zero on the first step and wherever
        # either step is infinitely long in lambda (then the step is first order, as in k-diffusion).
        k = torch.zeros_like(b)
        h = [float(v) for v in s.h]
        for i in range(1, len(h)):
            if math.isfinite(h[i]) and math.isfinite(h[i - 1]) and h[i - 1] > 0:
                k[i] = b[i] * h[i] / (2 * h[i - 1])
        grid64 = grid.detach().to("cpu", torch.float64)
        return MultistepSDEState(  # sync-ok: CPU float64 coefficients, before the loop
            t=prepare_times(self.name, field, grid64[:-1], x, evaluates=("data",)),
            a=tuple(a.tolist()), b=tuple(b.tolist()), k=tuple(k.tolist()), c=tuple(c.tolist()),
            noise=StepNoise(times=tuple(grid64.tolist())),
        )

    def transition(self, field: Field, x: Tensor, state: MultistepSDEState, i: int) -> GaussianTransition:
        """Mean :math:`A x + B D + K (D - D_{prev})`, standard deviation :math:`C`; the state keeps
        :math:`D` (resampling reorders it with the particles)."""
        d = field.data(x, state.t[i])
        weights, values = [state.b[i]], [d]
        if state.previous is not None:  # K (D - D_prev) = K D - K D_prev
            weights, values = [state.b[i] + state.k[i], -state.k[i]], [d, state.previous]
        return GaussianTransition(combine(x, state.a[i], weights, values), state.c[i], dataclasses.replace(state, previous=d))

    def step(
        self, field: Field, x: Tensor, state: MultistepSDEState, i: int, *, generator: RandomSource | BrownianPath = None
    ) -> tuple[Tensor, MultistepSDEState]:
        tr = self.transition(field, x, state, i)
        if self.eta > 0:
            tr.mean.add_(step_normal(x, state.noise, i, generator), alpha=tr.std)
        return tr.mean, tr.state
