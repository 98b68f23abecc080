r"""Generalized heavy ball (GHVB, Wizadwongsa et al. 2023): momentum that keeps the order.

The noise predictions are averaged first, :math:`v_n = (1-\beta)v_{n-1} + \beta\,\hat x_0^{(n)}`
(:math:`v_0 = \hat x_0^{(0)}`), and the step applies the :math:`\beta`-dependent Adams–Bashforth mixer
of :data:`~flowbridge.samplers.multistep.plms.GHVB_TABLE` to :math:`v_n, v_{n-1}, \dots` in the DDIM
variables:

.. math::
    \bar x_{n+1} = \bar x_n + (\bar\sigma_{n+1} - \bar\sigma_n) \sum_{j<k} c_j(\beta)\, v_{n-j}.

The mixer undoes the lag of the average to order k, so GHVB-k converges at the order of PLMS-k;
:math:`\beta = 1` is PLMS-k exactly. Typical :math:`\beta`: 0.8-0.9.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

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
from flowbridge.samplers.multistep.heavy_ball import momentum_update
from flowbridge.samplers.multistep.plms import adams_bashforth


@register_solver("ghvb")
class GHVB(GaussianMultistep):
    """GHVB-k: order k (as PLMS-k, with the same warm-up), one evaluation per step.

    Args:
        order: k, 1 to 4 (default 4; the reference's "3.8" is order 4, beta 0.8).
        beta: weight on the new noise prediction, in (0, 1] (default 0.8).
        final_step: ``"solver"`` (default), ``"first_order"`` or ``"denoise"``.
        warmup: ``"lower_order"``.
        weight_multipliers: per-step multipliers of the history weights (one row per step), as fitted by
            :func:`flowbridge.samplers.tuning.tune`; ``None`` (default): the solver's own coefficients.
    """

    default_grid = "logsnr"  # experiments/results/grids.md

    order = 4
    min_steps = 2
    works_in_log_snr = False
    evaluates = "noise"

    def __init__(
        self, order: int = 4, beta: float = 0.8, final_step: str | None = None, warmup: str = "lower_order",
        weight_multipliers: Sequence[Sequence[float]] | None = None,
    ) -> None:
        super().__init__(final_step=final_step, warmup=warmup, weight_multipliers=weight_multipliers)
        self.solver_order = check_order(order, 1, 4)
        self.beta = check_beta(beta)

    def plan(self, g: GaussianGrid) -> tuple[StepPlan, ...]:
        plans = []
        for i in range(g.steps):
            scale, c = g.noise_scale(i)
            mixer = adams_bashforth(self.step_order(g, i, self.solver_order), self.beta)
            plans.append(StepPlan(scale, tuple(c * w for w in mixer)))
        return tuple(plans)

    def step(
        self, field: Field, x: Tensor, state: MultistepState, i: int, *, generator: RandomSource = None
    ) -> tuple[Tensor, MultistepState]:
        velocity = momentum_update(state.velocity, field.noise(x, state.t[i]), self.beta)
        history = push(state.history, velocity, self.solver_order)
        p = state.plans[i]
        return combine(x, p.scale, p.weights, history), replace(state, history=history, velocity=velocity)
