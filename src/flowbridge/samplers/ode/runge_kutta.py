r"""Explicit fixed-step Runge–Kutta solvers for the probability-flow ODE :math:`\dot x = u(x, t)`.

One algorithm, coefficients as data: each solver is a Butcher tableau
:math:`k_j = u(x + h\sum_l a_{jl} k_l,\ t + c_j h)`, :math:`x' = x + h \sum_j b_j k_j`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from flowbridge._utils import TimePoint
from flowbridge.fields.base import Field
from flowbridge.random import RandomSource
from flowbridge.samplers.base import Solver, prepare_times, register_solver


@dataclass(frozen=True)
class ButcherTableau:
    """Coefficients of an explicit Runge–Kutta method (``a`` strictly lower triangular)."""

    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    c: tuple[float, ...]


@dataclass(frozen=True)
class GridState:
    """The stage times of every step and the step sizes, prepared before the loop.

    Attributes:
        stages: ``stages[i][j]`` is the time :math:`t_i + c_j h_i` of stage ``j`` of step ``i``.
        h: the step sizes :math:`h_i` as Python floats (kernel arguments, no device tensors).
    """

    stages: tuple[tuple[TimePoint, ...], ...]
    h: tuple[float, ...]


class RungeKutta(Solver[GridState]):
    """A fixed-step explicit Runge–Kutta solver defined by its :attr:`tableau`."""

    tableau: ClassVar[ButcherTableau]

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "tableau" in cls.__dict__:
            cls.nfe_per_step = len(cls.tableau.b)

    def init(self, field: Field, x: Tensor, grid: Tensor, *, generator: RandomSource = None) -> GridState:
        t = grid.detach().to(device="cpu", dtype=torch.float64)
        h = t[1:] - t[:-1]
        c = torch.tensor(self.tableau.c, dtype=torch.float64)
        stage_times = t[:-1, None] + c[None, :] * h[:, None]  # (steps, stages), one copy to the device
        stage_times[:, c == 1.0] = t[1:, None]  # exactly the grid's next time (t_i + h_i may round past t = 1)
        points = prepare_times(self.name, field, stage_times.reshape(-1), x, evaluates=("velocity",))
        width = len(self.tableau.c)
        stages = tuple(points[i * width:(i + 1) * width] for i in range(len(h)))
        return GridState(stages=stages, h=tuple(h.tolist()))  # sync-ok: CPU grid, before the loop

    def step(
        self, field: Field, x: Tensor, state: GridState, i: int, *, generator: RandomSource = None
    ) -> tuple[Tensor, GridState]:
        tab = self.tableau
        h = state.h[i]
        ks: list[Tensor] = []
        for a_row, point in zip(tab.a, state.stages[i]):
            x_stage = x
            for a, k in zip(a_row, ks):
                if a != 0.0:
                    x_stage = torch.add(x_stage, k, alpha=h * a)
            ks.append(field.velocity(x_stage, point))
        x_next = x
        for b, k in zip(tab.b, ks):
            if b != 0.0:
                # The first add allocates; the rest accumulate into that fresh tensor.
                x_next = torch.add(x_next, k, alpha=h * b) if x_next is x else x_next.add_(k, alpha=h * b)
        return x_next, state


@register_solver("euler")
class Euler(RungeKutta):
    """Forward Euler, order 1."""

    order = 1
    tableau = ButcherTableau(a=((),), b=(1.0,), c=(0.0,))


@register_solver("midpoint")
class Midpoint(RungeKutta):
    """Explicit midpoint, order 2."""

    order = 2
    tableau = ButcherTableau(a=((), (0.5,)), b=(0.0, 1.0), c=(0.0, 0.5))


@register_solver("heun")
class Heun(RungeKutta):
    """Heun's method (explicit trapezoid, EDM's 2nd-order sampler), order 2."""

    order = 2
    tableau = ButcherTableau(a=((), (1.0,)), b=(0.5, 0.5), c=(0.0, 1.0))


@register_solver("rk4")
class RK4(RungeKutta):
    """The classical fourth-order Runge–Kutta method."""

    order = 4
    tableau = ButcherTableau(
        a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)), b=(1 / 6, 1 / 3, 1 / 3, 1 / 6), c=(0.0, 0.5, 0.5, 1.0)
    )
