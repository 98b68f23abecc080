r"""PLMS / Adams–Bashforth in the DDIM variables (Liu et al. 2022; Wizadwongsa et al. 2023).

With :math:`\bar x = x/\alpha` and :math:`\bar\sigma = \sigma/\alpha` the probability-flow ODE is
:math:`d\bar x/d\bar\sigma = \hat x_0` (the noise prediction), and PLMS-k is the k-step
Adams–Bashforth method with the *constant* (uniform-step) coefficients:

.. math::
    \bar x_{i+1} = \bar x_i + (\bar\sigma_{i+1} - \bar\sigma_i) \sum_{j<k} c_j \hat x_0^{(i-j)}.

The coefficient table (:data:`GHVB_TABLE`) is the generalized heavy-ball mixer of Wizadwongsa et al.,
which is Adams–Bashforth at :math:`\beta = 1`. Constant coefficients are exact-order on grids uniform in
:math:`\bar\sigma`; on other grids the step ratios enter the local error (use ``deis`` for
variable-step Adams coefficients). Warm-up: orders ``1, 2, ..., k`` while the history fills, which
caps the observed order near 2-3 for ``k = 4`` (the first step is Euler).
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
    check_order,
    combine,
    push,
)

# Order k -> (denominator, ((constant, slope), ...)) newest first: coefficient j is
# (constant + slope * beta) / (denominator * beta). beta = 1 gives Adams–Bashforth (each row sums to 1
# for every beta).
GHVB_TABLE: dict[int, tuple[int, tuple[tuple[int, int], ...]]] = {
    1: (1, ((0, 1),)),
    2: (2, ((2, 1), (-2, 1))),
    3: (12, ((18, 5), (-24, 8), (6, -1))),
    4: (24, ((46, 9), (-78, 19), (42, -5), (-10, 1))),
}


def adams_bashforth(order: int, beta: float = 1.0) -> tuple[float, ...]:
    """Mixer coefficients of ``order`` (newest first) at momentum ``beta``; ``beta = 1``: Adams–Bashforth."""
    denominator, rows = GHVB_TABLE[order]
    return tuple((c0 + c1 * beta) / (denominator * beta) for c0, c1 in rows)


@register_solver("plms")
class PLMS(GaussianMultistep):
    """Pseudo linear multistep (PLMS-k) on noise predictions, one evaluation per step.

    Args:
        order: number of steps k, 1 to 4 (default 4; order 1 is DDIM).
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
        self, order: int = 4, final_step: str | None = None, warmup: str = "lower_order",
        weight_multipliers: Sequence[Sequence[float]] | None = None,
    ) -> None:
        super().__init__(final_step=final_step, warmup=warmup, weight_multipliers=weight_multipliers)
        self.solver_order = check_order(order, 1, 4)

    def plan(self, g: GaussianGrid) -> tuple[StepPlan, ...]:
        plans = []
        for i in range(g.steps):
            scale, c = g.noise_scale(i)
            plans.append(StepPlan(scale, tuple(c * w for w in adams_bashforth(self.step_order(g, i, self.solver_order)))))
        return tuple(plans)

    def step(
        self, field: Field, x: Tensor, state: MultistepState, i: int, *, generator: RandomSource = None
    ) -> tuple[Tensor, MultistepState]:
        history = push(state.history, field.noise(x, state.t[i]), self.solver_order)
        p = state.plans[i]
        return combine(x, p.scale, p.weights, history), replace(state, history=history)
