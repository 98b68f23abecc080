"""The solver :func:`flowbridge.sample` uses when none is named (``solver="auto"``).

``auto`` reads ``steps`` as a budget of field evaluations (NFE) and picks, for the field's path,
the solver with the smallest endpoint error at that budget on the exact Gaussian-mixture benchmark
(``experiments/bench_recommend.py``, ``experiments/results/recommend.md``): d = 2, 16, 64, NFE 5 to
50, each solver on its own default grid and span, error to a float64 ``dopri5`` endpoint.

The table is per schedule because the ranking changes with it. Measured worst ratio of ``auto``'s
error to the best of ten solvers over d = 2, 16, 64 and NFE 5 to 50: 1.38 on ``vp`` and 1.43 on ``ve``
(GHVB, order 4 and beta 0.8, up to 15 NFE, then UniPC order 3, and RK4 from 26 NFE on ``vp``), 2.17 on
``linear`` (DPM-Solver++(2M) up to 15 NFE, then RK4) and 2.65 on ``trig``. Above 20 NFE the
multistep solvers on their log-SNR grids stall on the VP, linear and trig paths while RK4 on a uniform
grid keeps converging (2 to 35 times smaller errors at 50 NFE). Off a Gaussian path (interpolants,
bridges) and on a schedule the benchmark has not measured, ``auto`` is Heun, which needs nothing from
the path. A model tuned with :mod:`flowbridge.samplers.tuning` does better than any of these.
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
    """

    solver: str
    steps: int
    options: dict[str, Any] = field(default_factory=dict)


#: Per schedule name: ``(largest NFE, solver, options)`` rows in increasing NFE; the first row whose
#: bound is at least the budget applies. Chosen from ``experiments/results/recommend.md``.
_RECOMMENDED: dict[str, tuple[tuple[float, str, dict[str, Any]], ...]] = {
    "vp": ((15, "ghvb", {}), (25, "unipc", {"order": 3}), (math.inf, "rk4", {})),
    "ve": ((15, "ghvb", {}), (math.inf, "unipc", {"order": 3})),
    "linear": ((15, "dpmpp_2m", {}), (math.inf, "rk4", {})),
    "trig": ((10, "ghvb", {}), (15, "dpmpp_3m", {"variant": "lu"}), (math.inf, "rk4", {})),
}
_FALLBACK: tuple[str, dict[str, Any]] = ("heun", {})


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

    name, options = _FALLBACK
    if isinstance(field.path, GaussianPath):
        for bound, candidate, candidate_options in _RECOMMENDED.get(field.path.schedule.name, ()):
            if nfe <= bound:
                name, options = candidate, candidate_options
                break
    per_step = max(SOLVERS[name].nfe_per_step, 1)
    steps = max(nfe // per_step, SOLVERS[name].min_steps)
    return Recommendation(solver=name, steps=steps, options=dict(options))


__all__ = ["AUTO", "Recommendation", "recommend"]
