r"""Heavy-ball momentum on multistep solvers (Wizadwongsa et al. 2023, arXiv 2307.11118).

A base solver's update direction :math:`e_n` (a combination of recent field outputs) is averaged,

.. math::
    v_n = (1-\beta)\,v_{n-1} + \beta\,e_n,\qquad v_0 = e_0,

and the step uses :math:`v_n` (heavy ball) or :math:`(1-\beta)v_n + \beta e_n` (Nesterov) in place of
:math:`e_n`. The average enlarges the stability region (fewer divergence artifacts at low NFE and high
guidance) at the price of first-order convergence; :math:`\beta = 1` is the base solver exactly.

* ``plms_hb`` / ``plms_nesterov``: :math:`e_n` = Adams–Bashforth-k of the noise predictions, step in
  :math:`\bar x = x/\alpha` over :math:`\bar\sigma = \sigma/\alpha`.
* ``dpmpp_2m_hb``: :math:`e_n = D_n` of DPM-Solver++(2M), step
  :math:`x_{n+1} = \tfrac{\sigma_{n+1}}{\sigma_n}x_n - \alpha_{n+1}\varphi_1 v_n`; the first step and (by
  default, as in the reference) the last step are first order without momentum.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from torch import Tensor

from flowbridge.fields.base import Field
from flowbridge.random import RandomSource
from flowbridge.samplers.base import register_solver
from flowbridge.samplers.multistep.common import (
    GaussianGrid,
    GaussianMultistep,
    MultistepState,
    StepPlan,
    check_beta,
    check_order,
    combine,
    push,
)
from flowbridge.samplers.multistep.plms import adams_bashforth


@dataclass(frozen=True)
class HeavyBallPlan(StepPlan):
    r"""``weights`` mix the history into :math:`e_n`; :math:`x' = \text{scale}\,x + \text{direction}\cdot v`.
    ``momentum=False`` steps with the newest field output alone (a first-order step, no momentum)."""

    direction: float = 0.0
    momentum: bool = True


def momentum_update(velocity: Tensor | None, update: Tensor, beta: float) -> Tensor:
    r""":math:`v = (1-\beta)v + \beta e` (:math:`v = e` at the start); exact for :math:`\beta = 1`."""
    if velocity is None:
        return update
    return velocity.mul(1.0 - beta).add_(update, alpha=beta)


def mix(history: tuple[Tensor, ...], weights: tuple[float, ...]) -> Tensor:
    """:math:`\\sum_j w_j y_j` (no copy when it is the newest entry alone)."""
    if len(weights) == 1 and weights[0] == 1.0:
        return history[0]
    return combine(history[0], weights[0], weights[1:], history[1:])


class HeavyBall(GaussianMultistep):
    """Shared step of the heavy-ball family; subclasses choose the base direction and the variables."""

    nesterov: ClassVar[bool] = False
    evaluates: ClassVar[str] = "noise"
    history_length: int = 1

    def __init__(self, beta: float = 0.8, final_step: str | None = None, warmup: str = "lower_order") -> None:
        super().__init__(final_step=final_step, warmup=warmup)
        self.beta = check_beta(beta)

    def step(
        self, field: Field, x: Tensor, state: MultistepState, i: int, *, generator: RandomSource = None
    ) -> tuple[Tensor, MultistepState]:
        t = state.t[i]
        out = field.noise(x, t) if self.evaluates == "noise" else field.data(x, t)
        history = push(state.history, out, self.history_length)
        p = state.plans[i]
        if not p.momentum:
            return combine(x, p.scale, (p.direction,), (out,)), replace(state, history=history)
        update = mix(history, p.weights)
        velocity = momentum_update(state.velocity, update, self.beta)
        direction = velocity
        if self.nesterov:
            direction = combine(velocity, 1.0 - self.beta, (self.beta,), (update,))
        x_next = combine(x, p.scale, (p.direction,), (direction,))
        return x_next, replace(state, history=history, velocity=velocity)


class PLMSHeavyBall(HeavyBall):
    """Heavy ball on PLMS-k."""

    works_in_log_snr = False

    def __init__(
        self, order: int = 4, beta: float = 0.8, final_step: str | None = None, warmup: str = "lower_order"
    ) -> None:
        super().__init__(beta=beta, final_step=final_step, warmup=warmup)
        self.history_length = self.solver_order = check_order(order, 1, 4)

    def plan(self, g: GaussianGrid) -> tuple[HeavyBallPlan, ...]:
        plans = []
        for i in range(g.steps):
            scale, c = g.noise_scale(i)
            weights = adams_bashforth(self.step_order(g, i, self.solver_order))
            plans.append(HeavyBallPlan(scale, weights, direction=c))
        return tuple(plans)


@register_solver("plms_hb")
class PLMSHB(PLMSHeavyBall):
    r"""PLMS-k with heavy-ball momentum: first order; ``beta = 1`` is ``plms``.

    Args:
        order: Adams–Bashforth order k of the base direction (1 to 4, default 4).
        beta: weight on the new direction, in (0, 1] (default 0.8).
        final_step: ``"solver"`` (default), ``"first_order"`` or ``"denoise"`` (lowers the last
            direction to the newest noise prediction; momentum is kept).
        warmup: ``"lower_order"``.
    """

    default_grid = "karras"  # experiments/results/grids.md

    order = 1


@register_solver("plms_nesterov")
class PLMSNesterov(PLMSHeavyBall):
    r"""PLMS-k with Nesterov momentum: steps with :math:`(1-\beta)v_n + \beta e_n`; ``beta = 1`` is ``plms``.

    Args: as :class:`PLMSHB`.
    """

    default_grid = "logsnr"  # experiments/results/grids.md

    order = 1
    nesterov = True


@register_solver("dpmpp_2m_hb")
class DPMSolverPlusPlus2MHB(HeavyBall):
    r"""DPM-Solver++(2M) with heavy-ball momentum on :math:`D_n`: first order; ``beta = 1`` is
    ``dpmpp_2m`` (with the same ``final_step``).

    Args:
        beta: weight on the new direction, in (0, 1] (default 0.8).
        final_step: ``"first_order"`` (default, as in the reference: the last step is
            :math:`x = \tfrac{\sigma_t}{\sigma_s}x - \alpha_t\varphi_1 m` without momentum), ``"solver"`` or
            ``"denoise"`` (also without momentum).
        warmup: ``"lower_order"``.
    """

    default_grid = "karras"  # experiments/results/grids.md

    order = 1
    evaluates = "data"
    history_length = 2
    default_final_step = "first_order"

    def plan(self, g: GaussianGrid) -> tuple[HeavyBallPlan, ...]:
        plans = []
        for i in range(g.steps):
            scale, b = g.data_step(i)
            last_first_order = i == g.steps - 1 and self.step_order(g, i, 2) == 1
            if i == 0 or last_first_order:
                weights: tuple[float, ...] = (1.0,)
            else:
                c = 1.0 / (2.0 * g.step_size_log_snr(i - 1) / g.step_size_log_snr(i))
                weights = (1.0 + c, -c)
            plans.append(HeavyBallPlan(scale, weights, direction=b, momentum=not (last_first_order and i > 0)))
        return tuple(plans)
