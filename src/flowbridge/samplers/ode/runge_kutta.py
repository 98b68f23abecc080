r"""Explicit fixed-step Runge–Kutta solvers for the probability-flow ODE :math:`\dot x = u(x, t)`.

One algorithm, coefficients as data: each solver is a Butcher tableau
:math:`k_j = u(x + h\sum_l a_{jl} k_l,\ t + c_j h)`, :math:`x' = x + h \sum_j b_j k_j`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from flowbridge.fields.base import Field
from flowbridge.random import RandomSource
from flowbridge.samplers.base import Solver, register_solver


@dataclass(frozen=True)
class ButcherTableau:
    """Coefficients of an explicit Runge–Kutta method (``a`` strictly lower triangular)."""

    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    c: tuple[float, ...]


@dataclass(frozen=True)
class GridState:
    """Time grid on the state's device and dtype, and the step sizes."""

    t: Tensor
    h: Tensor


class RungeKutta(Solver[GridState]):
    """A fixed-step explicit Runge–Kutta solver defined by its :attr:`tableau`."""

    tableau: ClassVar[ButcherTableau]

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "tableau" in cls.__dict__:
            cls.nfe_per_step = len(cls.tableau.b)

    def init(self, field: Field, x: Tensor, grid: Tensor, *, generator: RandomSource = None) -> GridState:
        t = grid.to(device=x.device, dtype=x.dtype)
        return GridState(t=t, h=t[1:] - t[:-1])

    def step(
        self, field: Field, x: Tensor, state: GridState, i: int, *, generator: RandomSource = None
    ) -> tuple[Tensor, GridState]:
        tab = self.tableau
        t, h = state.t[i], state.h[i]
        ks: list[Tensor] = []
        for a_row, c in zip(tab.a, tab.c):
            x_stage = x
            for a, k in zip(a_row, ks):
                if a != 0.0:
                    x_stage = x_stage + (h * a) * k
            ks.append(field.velocity(x_stage, t + c * h))
        update = sum((b * k for b, k in zip(tab.b, ks) if b != 0.0))
        return x + h * update, state


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
