"""Adaptive ODE solvers through torchdiffeq (reference and adaptive backend)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError
from flowbridge.fields.base import Field
from flowbridge.random import RandomSource
from flowbridge.samplers.base import (
    Observer,
    SamplingError,
    Solver,
    SolveResult,
    check_evaluable,
    register_solver,
)

#: torchdiffeq's adaptive Runge–Kutta methods (the ones that accept the ``step_t`` option).
_ADAPTIVE_RK = frozenset({"dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun"})


class TorchdiffeqSolver(Solver[None]):
    """Integrates the probability-flow ODE with ``torchdiffeq.odeint``.

    ``steps`` only fixes where a trajectory is recorded; the step size is chosen by the error
    controller. NFE is counted by the solver, not assumed.

    Args:
        rtol: relative tolerance.
        atol: absolute tolerance.
        options: extra options passed to torchdiffeq (e.g. ``{"max_num_steps": 10000}``).
    """

    method: str = "dopri5"
    nfe_per_step = 0

    def __init__(self, rtol: float = 1e-5, atol: float = 1e-5, options: dict[str, Any] | None = None) -> None:
        if not (rtol > 0 and atol > 0):
            raise ArgumentError(f"rtol and atol must be > 0; got rtol={rtol}, atol={atol}")
        self.rtol, self.atol = float(rtol), float(atol)
        self.options = dict(options or {})

    def validate_span(self, field: Field, t_start: float, t_end: float) -> None:
        # The controller may evaluate anywhere in the span: check a fine grid of it up front.
        check_evaluable(self.name, field, torch.linspace(t_start, t_end, 1025, dtype=torch.float64), evaluates=("velocity",))

    def init(self, field: Field, x: Tensor, grid: Tensor, *, generator: RandomSource = None) -> None:
        return None

    def step(self, field: Field, x: Tensor, state: None, i: int, *, generator: RandomSource = None) -> tuple[Tensor, None]:
        raise NotImplementedError(f"{self.name!r} is adaptive: call solve(), it has no fixed steps")

    def solve(
        self,
        field: Field,
        x: Tensor,
        grid: Tensor,
        *,
        generator: RandomSource = None,
        return_trajectory: bool = False,
        observer: Observer | None = None,
    ) -> SolveResult:
        import torchdiffeq

        self.check(field, len(grid) - 1)
        self.validate_span(field, float(grid[0]), float(grid[-1]))  # sync-ok: CPU grid, before the solve
        nfe = 0

        def rhs(t: Tensor, y: Tensor) -> Tensor:
            nonlocal nfe
            nfe += 1
            return field.velocity(y, t)

        times = grid if return_trajectory else grid[[0, -1]]
        options = dict(self.options)
        if self.method in _ADAPTIVE_RK:
            # Without a step boundary at the end, the last step overshoots t_end and evaluates the
            # field beyond it (outside [0, 1] on most paths, where schedules are NaN), and the
            # controller then shrinks dt to zero ("underflow in dt").
            options.setdefault("step_t", grid[-1:].to(dtype=x.dtype))
        try:
            ys = torchdiffeq.odeint(
                rhs, x, times.to(device=x.device, dtype=x.dtype), rtol=self.rtol, atol=self.atol,
                method=self.method, options=options or None,
            )
        except AssertionError as exc:  # torchdiffeq asserts when the step size underflows
            raise SamplingError(
                f"solver {self.name!r}: the adaptive step size underflowed ({exc}); the state or the field is "
                "non-finite, or the problem is too stiff for rtol/atol"
            ) from exc
        return SolveResult(x=ys[-1], nfe=nfe, trajectory=ys if return_trajectory else None)


@register_solver("dopri5")
class Dopri5(TorchdiffeqSolver):
    """Dormand–Prince 5(4) with adaptive steps (torchdiffeq)."""

    order = 5
    method = "dopri5"
