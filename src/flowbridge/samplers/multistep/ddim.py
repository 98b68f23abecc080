r"""DDIM (Song et al. 2021) as the first-order exponential integrator of the probability-flow ODE.

In :math:`\bar x = x/\alpha`, :math:`\bar\sigma = \sigma/\alpha` DDIM is Euler's method for
:math:`d\bar x/d\bar\sigma = \hat x_0`; equivalently, in the data form used here (finite when the last
time has :math:`\sigma = 0`),

.. math::
    x_{i+1} = \frac{\sigma_{i+1}}{\sigma_i} x_i + \Big(\alpha_{i+1} - \frac{\sigma_{i+1}}{\sigma_i}\alpha_i\Big)\hat x_1(x_i, t_i).

Order 1.
"""

from __future__ import annotations

from torch import Tensor

from flowbridge.fields.base import Field
from flowbridge.random import RandomSource
from flowbridge.samplers.base import register_solver
from flowbridge.samplers.multistep.common import GaussianGrid, GaussianMultistep, MultistepState, StepPlan, combine


@register_solver("ddim")
class DDIM(GaussianMultistep):
    """Deterministic DDIM (eta = 0) on any Gaussian path, any grid; one evaluation per step.

    Args:
        final_step: ``"solver"``/``"first_order"`` (the same for a first-order method) or ``"denoise"``.
        warmup: ``"lower_order"`` (no history is used).
        weight_multipliers: per-step multipliers of the history weights (one row per step), as fitted by
            :func:`flowbridge.samplers.tuning.tune`; ``None`` (default): the solver's own coefficients.
    """

    order = 1
    min_steps = 1

    def plan(self, g: GaussianGrid) -> tuple[StepPlan, ...]:
        return tuple(StepPlan(*_pair(g.data_step(i))) for i in range(g.steps))

    def step(
        self, field: Field, x: Tensor, state: MultistepState, i: int, *, generator: RandomSource = None
    ) -> tuple[Tensor, MultistepState]:
        p = state.plans[i]
        return combine(x, p.scale, p.weights, (field.data(x, state.t[i]),)), state


def _pair(ab: tuple[float, float]) -> tuple[float, tuple[float]]:
    return ab[0], (ab[1],)
