r"""DPM-Solver++ multistep (Lu et al. 2022, arXiv 2211.01095), orders 2 and 3, in half log-SNR.

With data predictions :math:`m_j = \hat x_1(x_j, t_j)`, :math:`h_i = \lambda_{i+1} - \lambda_i` and the
ratios :math:`r_0 = h_{i-1}/h_i`, :math:`r_1 = h_{i-2}/h_i`:

* 2M: :math:`D = (1 + \tfrac{1}{2r_0}) m_i - \tfrac{1}{2r_0} m_{i-1}`,
  :math:`x_{i+1} = \tfrac{\sigma_{i+1}}{\sigma_i}x_i - \alpha_{i+1}\varphi_1 D`;
* 3M: divided differences :math:`D_{1,0} = (m_i - m_{i-1})/r_0`, :math:`D_{1,1} = (m_{i-1} - m_{i-2})/r_1`,
  :math:`D_1 = D_{1,0} + \tfrac{r_0}{r_0+r_1}(D_{1,0} - D_{1,1}) \approx h\,\hat x_1'`,
  :math:`D_2 = \tfrac{D_{1,0} - D_{1,1}}{r_0+r_1} \approx \tfrac{h^2}{2}\hat x_1''`, and
  :math:`x_{i+1} = \tfrac{\sigma_{i+1}}{\sigma_i}x_i - \alpha_{i+1}\varphi_1 m_i + \alpha_{i+1}\varphi_2 D_1
  - 2\,\alpha_{i+1}\varphi_3 D_2`.

The factor 2 on the last term is what the Taylor expansion gives (the integral of
:math:`e^{u-h}u^2/2` is :math:`-h^2\varphi_3` and :math:`D_2 \approx h^2\hat x_1''/2`; see
:mod:`~flowbridge.samplers.multistep.exponential`); the reference implementations use 1, which leaves
an :math:`O(h^3)` local error (measured: their 3M converges at order 2, this one at order 3; see
``tests/samplers/test_multistep_orders.py``); ``variant="lu"`` reproduces them. Warm-up: orders 1, 2, 3 while the history fills.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
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
    check_option,
    combine,
    push,
)
from flowbridge.samplers.multistep.exponential import phi_functions

# Weight on D2 in the third-order update: 2 from the Taylor expansion ("taylor"), 1 in Lu et al.'s
# reference code and diffusers ("lu").
SECOND_DIFFERENCE_WEIGHT: dict[str, float] = {"taylor": 2.0, "lu": 1.0}


def dpmpp_weights(g: GaussianGrid, i: int, order: int, d2_weight: float = 2.0) -> StepPlan:
    """Coefficients of step ``i`` at ``order`` (1, 2 or 3) on the data-prediction history."""
    scale, b = g.data_step(i)  # b = alpha_{i+1} (1 - e^{-h}) = -alpha_{i+1} phi1
    if order == 1:
        return StepPlan(scale, (b,))
    h = g.step_size_log_snr(i)
    r0 = g.step_size_log_snr(i - 1) / h
    if order == 2:
        c = 1.0 / (2.0 * r0)
        return StepPlan(scale, (b * (1.0 + c), -b * c))
    r1 = g.step_size_log_snr(i - 2) / h
    phi = phi_functions(h)
    a = g.values.alpha[i + 1]
    # Coefficient vectors over (m_i, m_{i-1}, m_{i-2}).
    d10 = (1.0 / r0, -1.0 / r0, 0.0)
    d11 = (0.0, 1.0 / r1, -1.0 / r1)
    diff = tuple(p - q for p, q in zip(d10, d11))
    d1 = tuple(p + r0 / (r0 + r1) * q for p, q in zip(d10, diff))
    d2 = tuple(q / (r0 + r1) for q in diff)
    m0 = (b, 0.0, 0.0)
    weights = tuple(u + a * phi.phi2 * v - d2_weight * a * phi.phi3 * w for u, v, w in zip(m0, d1, d2))
    return StepPlan(scale, weights)


class DPMSolverPlusPlus(GaussianMultistep):
    """DPM-Solver++ multistep of a fixed :attr:`order` (one evaluation per step)."""

    multistep_order: ClassVar[int] = 2
    d2_weight: float = 2.0

    def plan(self, g: GaussianGrid) -> tuple[StepPlan, ...]:
        return tuple(
            dpmpp_weights(g, i, self.step_order(g, i, self.multistep_order), self.d2_weight) for i in range(g.steps)
        )

    def step(
        self, field: Field, x: Tensor, state: MultistepState, i: int, *, generator: RandomSource = None
    ) -> tuple[Tensor, MultistepState]:
        history = push(state.history, field.data(x, state.t[i]), self.multistep_order)
        p = state.plans[i]
        return combine(x, p.scale, p.weights, history), replace(state, history=history)


@register_solver("dpmpp_2m")
class DPMSolverPlusPlus2M(DPMSolverPlusPlus):
    """DPM-Solver++(2M): second order; the first step is first order (warm-up).

    Args:
        final_step: ``"solver"`` (default), ``"first_order"`` (diffusers' ``lower_order_final``) or
            ``"denoise"`` (a first-order jump to sigma = 0 from ``grid[-2]``).
        warmup: ``"lower_order"``.
        weight_multipliers: per-step multipliers of the history weights (one row per step), as fitted by
            :func:`flowbridge.samplers.tuning.tune`; ``None`` (default): the solver's own coefficients.
    """

    order = 2
    min_steps = 2
    multistep_order = 2


@register_solver("dpmpp_3m")
class DPMSolverPlusPlus3M(DPMSolverPlusPlus):
    """DPM-Solver++(3M): third order once three data predictions exist (steps 1, 2 are orders 1, 2;
    measured order 3.0 on a Karras grid, the warm-up does not show at 64-512 steps).

    Args:
        variant: ``"taylor"`` (default; weight 2 on :math:`D_2`, third order) or ``"lu"`` (weight 1, as
            in Lu et al.'s code and diffusers: second order, but measured to have the smaller error at
            NFE <= 25 on the benchmark targets; see ``experiments/results/solvers.md``).
        final_step: ``"solver"`` (default), ``"first_order"`` or ``"denoise"``.
        warmup: ``"lower_order"``.
        weight_multipliers: per-step multipliers of the history weights (one row per step), as fitted by
            :func:`flowbridge.samplers.tuning.tune`; ``None`` (default): the solver's own coefficients.
    """

    default_grid = "logsnr"  # experiments/results/grids.md

    order = 3
    min_steps = 3
    multistep_order = 3

    def __init__(
        self, variant: str = "taylor", final_step: str | None = None, warmup: str = "lower_order",
        weight_multipliers: Sequence[Sequence[float]] | None = None,
    ) -> None:
        super().__init__(final_step=final_step, warmup=warmup, weight_multipliers=weight_multipliers)
        check_option("variant", variant, tuple(SECOND_DIFFERENCE_WEIGHT))
        self.variant = variant
        self.d2_weight = SECOND_DIFFERENCE_WEIGHT[variant]
