"""The solver :func:`flowbridge.sample` uses when none is named (``solver="auto"``).

``auto`` reads ``steps`` as a budget of field evaluations (NFE) and picks, for the field's path,
the solver with the smallest endpoint error at that budget on the exact Gaussian-mixture benchmark
(``experiments/bench_recommend.py``, ``experiments/results/recommend.md``): d = 2, 16, 64, NFE 5 to
50, each solver on its own default grid and span, error to a float64 ``dopri5`` endpoint.

The table is per schedule because the ranking changes with it. Measured worst ratio of ``auto``'s
error to the best of ten solvers on their default grids, over d = 2, 16, 64 and NFE 5 to 50: 1.38 on
``vp`` (GHVB, order 4 and beta 0.8, up to 15 NFE, then UniPC order 3 on the quadratic grid), 1.43 on
``ve`` (GHVB, then UniPC order 3), 2.17 on ``linear`` (DPM-Solver++(2M) up to 15 NFE, then RK4) and 2.65
on ``trig``. Above ~20 NFE the multistep solvers on their log-SNR grids stall on these targets (the
grid's last steps fall below the modes' width) while RK4 on a uniform grid, or UniPC on a quadratic
one, keep converging. Which grid is best depends on the target (the quadratic grid wins on these
mixtures at every NFE and loses on the narrow modes of ``bench_grids.py``), so below 16 NFE each solver
keeps its own default grid. Off a Gaussian path (interpolants, bridges) and on a schedule the
benchmark has not measured, ``auto`` is Heun, which needs nothing from the path. A solver tuned to
the model (:mod:`flowbridge.samplers.tuning`) fits the grid and does better than any of these.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from flowbridge.errors import ArgumentError
from flowbridge.fields.base import Field, check_field
from flowbridge.paths.gaussian import GaussianPath

AUTO = "auto"


@dataclass(frozen=True)
class Recommendation:
    """A solver chosen for a budget.

    Attributes:
        solver: the registered solver name.
        steps: its number of steps (the budget divided by its evaluations per step, at least 1).
        options: the solver's options.
        grid: the registered grid to use (``None``: the solver's own default grid).
    """

    solver: str
    steps: int
    options: dict[str, Any] = field(default_factory=dict)
    grid: str | None = None


#: Per schedule name: ``(largest NFE, solver, options, grid)`` rows in increasing NFE; the first row whose
#: bound is at least the budget applies. Chosen from ``experiments/results/recommend.md``.
_RECOMMENDED: dict[str, tuple[tuple[float, str, dict[str, Any], str | None], ...]] = {
    "vp": ((15, "ghvb", {}, None), (math.inf, "unipc", {"order": 3}, "quadratic")),
    "ve": ((15, "ghvb", {}, None), (math.inf, "unipc", {"order": 3}, None)),
    "linear": ((15, "dpmpp_2m", {}, None), (math.inf, "rk4", {}, None)),
    "trig": ((10, "ghvb", {}, None), (15, "dpmpp_3m", {"variant": "lu"}, None), (math.inf, "rk4", {}, None)),
}
_FALLBACK: tuple[str, dict[str, Any], str | None] = ("heun", {}, None)


def recommend(field: Field, nfe: int) -> Recommendation:
    """The solver ``auto`` stands for on ``field`` with a budget of ``nfe`` evaluations.

    Args:
        field: the field to sample.
        nfe: the budget of field evaluations (``steps`` of :func:`flowbridge.sample`).

    Returns:
        :class:`Recommendation`: solver name, its steps for the budget and its options.

    Raises:
        ArgumentError: ``field`` is not a flowbridge field, or ``nfe`` is not a positive integer.
    """
    from flowbridge.samplers.base import SOLVERS  # the registry fills as the solver modules import

    check_field(field)
    if isinstance(nfe, bool) or not isinstance(nfe, int) or nfe < 1:
        raise ArgumentError(f"nfe must be a positive integer budget of field evaluations; got {nfe!r}")

    name, options, grid = _FALLBACK
    if isinstance(field.path, GaussianPath):
        for bound, *choice in _RECOMMENDED.get(field.path.schedule.name, ()):
            if nfe <= bound:
                name, options, grid = choice
                break
    per_step = max(SOLVERS[name].nfe_per_step, 1)
    steps = max(nfe // per_step, SOLVERS[name].min_steps)
    return Recommendation(solver=name, steps=steps, options=dict(options), grid=grid)


__all__ = ["AUTO", "Recommendation", "recommend"]
