r"""UniPC (Zhao et al. 2023, arXiv 2302.04867): unified predictor-corrector in half log-SNR.

Data-prediction form. For a step from :math:`s` to :math:`t`, :math:`h = \lambda_t - \lambda_s`,
:math:`\hat h = -h`, previous points at relative positions
:math:`r_k = (\lambda_{s-k} - \lambda_s)/h` and divided differences :math:`D_k = (m_{s-k} - m_s)/r_k`,

.. math::
    x_t = \frac{\sigma_t}{\sigma_s} x_s - \alpha_t\varphi_1 m_s - \alpha_t B(h) \sum_k \rho_k D_k,

where :math:`B(h) = \hat h` (``bh1``) or :math:`e^{\hat h} - 1` (``bh2``) and :math:`\rho` solves
:math:`R\rho = b` with :math:`R_{ik} = r_k^{\,i}`, :math:`b_i = i!\,g_i(\hat h)/B(h)`,
:math:`g_i(z) = \sum_{n>i} z^{n-i}/n!`. The predictor UniP-p uses the ``p - 1`` previous points
(:math:`\rho = 1/2` for ``p = 2``); the corrector UniC-p, applied once the model has been evaluated at
the predicted point (no extra evaluation), adds that point (:math:`r = 1`, :math:`D = m_t - m_s`;
:math:`\rho = 1/2` for ``p = 1``) and raises the order to ``p + 1``. The last point is not corrected
(that would cost one more evaluation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

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
    check_order,
    combine,
    push,
)

VARIANTS: tuple[str, ...] = ("bh1", "bh2")


@dataclass(frozen=True)
class UniPCPlan(StepPlan):
    """Predictor coefficients (on ``x_i`` and the data predictions ``m_i, m_{i-1}, ...``) and the
    corrector that first replaces ``x_i`` (on the anchor ``x_{i-1}`` and ``m_i, m_{i-1}, ...``)."""

    corrector: StepPlan | None = None


def _g(k: int, z: float) -> float:
    r""":math:`g_k(z) = \sum_{n>k} z^{n-k}/n! = (e^z - \sum_{j\le k} z^j/j!)/z^k`, by series for small ``|z|``."""
    if abs(z) < 1.0:
        total, term = 0.0, 1.0 / math.factorial(k)
        for n in range(k + 1, k + 30):
            term *= z / n
            total += term
        return total
    partial = sum(z**j / math.factorial(j) for j in range(k + 1))
    return (math.exp(z) - partial) / z**k


def _unipc_step(g: GaussianGrid, s: int, order: int, variant: str, corrector: bool) -> StepPlan:
    """Coefficients of the step from ``s`` to ``s + 1``: predictor (``corrector=False``; weights on
    ``m_s, m_{s-1}, ...``) or corrector (weights on ``m_{s+1}, m_s, m_{s-1}, ...``)."""
    import numpy as np  # imported where used: `import flowbridge` stays light

    scale, b_first = g.data_step(s)  # b_first = -alpha_t phi1 = alpha_t (1 - e^{-h})
    n_prev = order - 1
    if not corrector and order == 1:
        return StepPlan(scale, (b_first,))
    alpha_t = g.values.alpha[s + 1]
    h = g.step_size_log_snr(s)
    hh = -h
    big_b = hh if variant == "bh1" else math.expm1(hh)
    rks = [(g.values.log_snr[s - k] - g.values.log_snr[s]) / h for k in range(1, n_prev + 1)]
    b = [math.factorial(i) * _g(i, hh) / big_b for i in range(1, order + 1)]
    if corrector:
        if order == 1:
            rhos = [0.5]
        else:
            r_all = rks + [1.0]
            rhos = np.linalg.solve([[r**i for r in r_all] for i in range(order)], b).tolist()
        rho_prev, rho_new = rhos[:-1], rhos[-1]
    else:
        if order == 2:
            rho_prev = [0.5]
        else:
            rho_prev = np.linalg.solve([[r**i for r in rks] for i in range(n_prev)], b[:n_prev]).tolist()
        rho_new = 0.0
    c = alpha_t * big_b
    w_s = b_first + c * (sum(rho / r for rho, r in zip(rho_prev, rks)) + rho_new)
    w_prev = [-c * rho / r for rho, r in zip(rho_prev, rks)]
    weights = ([-c * rho_new] if corrector else []) + [w_s] + w_prev
    return StepPlan(scale, tuple(weights))


@register_solver("unipc")
class UniPC(GaussianMultistep):
    """UniPC multistep predictor-corrector (one evaluation per step).

    Converges at order ``order + 1`` with the corrector (UniC raises the order by one), ``order``
    without it; warm-up orders ``1, 2, ...`` while the history fills.

    Args:
        order: predictor order, 1 to 3 (diffusers' ``solver_order``; default 2).
        variant: ``"bh2"`` (default; :math:`B(h) = e^{-h} - 1`) or ``"bh1"`` (:math:`B(h) = -h`).
        corrector: apply UniC after every evaluation but the first.
        final_step: ``"solver"`` (default), ``"first_order"`` (diffusers' ``lower_order_final``) or
            ``"denoise"``.
        warmup: ``"lower_order"``.
    """

    default_grid = "logsnr"  # experiments/results/grids.md

    order = 3
    min_steps = 2

    def __init__(
        self, order: int = 2, variant: str = "bh2", corrector: bool = True,
        final_step: str | None = None, warmup: str = "lower_order",
    ) -> None:
        super().__init__(final_step=final_step, warmup=warmup)
        check_option("variant", variant, VARIANTS)
        self.solver_order = check_order(order, 1, 3)
        self.variant = variant
        self.corrector = bool(corrector)

    @property
    def convergence_order(self) -> int:
        """The order this configuration converges at."""
        return self.solver_order + int(self.corrector)

    def plan(self, g: GaussianGrid) -> tuple[UniPCPlan, ...]:
        orders = [self.step_order(g, i, self.solver_order) for i in range(g.steps)]
        plans = []
        for i, p in enumerate(orders):
            pred = _unipc_step(g, i, p, self.variant, corrector=False)
            corr = _unipc_step(g, i - 1, orders[i - 1], self.variant, corrector=True) if (self.corrector and i > 0) else None
            plans.append(UniPCPlan(pred.scale, pred.weights, corrector=corr))
        return tuple(plans)

    def step(
        self, field: Field, x: Tensor, state: MultistepState, i: int, *, generator: RandomSource = None
    ) -> tuple[Tensor, MultistepState]:
        m = field.data(x, state.t[i])
        plan = state.plans[i]
        if plan.corrector is not None:
            c = plan.corrector
            x = combine(state.anchor, c.scale, c.weights, (m,) + state.history)
        history = push(state.history, m, self.solver_order)
        return combine(x, plan.scale, plan.weights, history), replace(state, history=history, anchor=x)
