r"""DEIS (Zhang & Chen 2023, arXiv 2204.13902), the :math:`\rho`AB variant: variable-step Adams–Bashforth
in :math:`\bar\sigma = \sigma/\alpha` on the noise prediction.

.. math::
    \bar x_{i+1} = \bar x_i + \sum_{j<k} \hat x_0^{(i-j)} \int_{\bar\sigma_i}^{\bar\sigma_{i+1}} \ell_j(s)\,ds,

with :math:`\ell_j` the Lagrange basis through :math:`\bar\sigma_i, \dots, \bar\sigma_{i-k+1}`. Unlike
PLMS the weights follow the actual step ratios, so the order holds on every grid. The integrals are
computed in float64 by Gauss–Legendre quadrature (exact for these polynomials).
"""

from __future__ import annotations

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


def lagrange_integrals(nodes: list[float]) -> list[float]:
    """:math:`\\int_0^1 \\ell_j(u)\\,du` for the Lagrange basis through ``nodes`` (relative positions)."""
    import numpy as np  # imported where used: `import flowbridge` stays light

    u, w = np.polynomial.legendre.leggauss(max(len(nodes), 2))
    u, w = 0.5 * (u + 1.0), 0.5 * w
    out = []
    for j, node_j in enumerate(nodes):
        basis = np.ones_like(u)
        for m, node_m in enumerate(nodes):
            if m != j:
                basis *= (u - node_m) / (node_j - node_m)
        out.append(float(np.dot(w, basis)))
    return out


@register_solver("deis")
class DEIS(GaussianMultistep):
    """:math:`\\rho`AB-DEIS of order k (1 to 4, default 3), one evaluation per step.

    Args:
        order: number of steps k.
        final_step: ``"solver"`` (default), ``"first_order"`` or ``"denoise"``.
        warmup: ``"lower_order"``.
    """

    default_grid = "karras"  # experiments/results/grids.md

    order = 3
    min_steps = 2
    works_in_log_snr = False
    evaluates = "noise"

    def __init__(self, order: int = 3, final_step: str | None = None, warmup: str = "lower_order") -> None:
        super().__init__(final_step=final_step, warmup=warmup)
        self.solver_order = check_order(order, 1, 4)

    def plan(self, g: GaussianGrid) -> tuple[StepPlan, ...]:
        plans = []
        for i in range(g.steps):
            k = self.step_order(g, i, self.solver_order)
            scale, c = g.noise_scale(i)  # c = alpha_{i+1} * (sigma_bar_{i+1} - sigma_bar_i)
            delta = g.values.sigma_bar[i + 1] - g.values.sigma_bar[i]
            nodes = [(g.values.sigma_bar[i - j] - g.values.sigma_bar[i]) / delta for j in range(k)]
            plans.append(StepPlan(scale, tuple(c * w for w in lagrange_integrals(nodes))))
        return tuple(plans)

    def step(
        self, field: Field, x: Tensor, state: MultistepState, i: int, *, generator: RandomSource = None
    ) -> tuple[Tensor, MultistepState]:
        history = push(state.history, field.noise(x, state.t[i]), self.solver_order)
        p = state.plans[i]
        return combine(x, p.scale, p.weights, history), replace(state, history=history)
