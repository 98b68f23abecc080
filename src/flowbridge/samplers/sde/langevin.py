r"""Langevin correction and predictor–corrector sampling (Song et al. 2021, Algorithm 1 of PC).

At a fixed time :math:`t` the unadjusted Langevin step

.. math::
    x \leftarrow x + \delta\,s(x, t) + \sqrt{2\delta}\,\xi, \qquad
    \delta = 2\,\big(\text{snr}\cdot\|\xi\| / \|s(x, t)\|\big)^2,

leaves :math:`p_t` invariant up to an :math:`O(\delta)` bias. The step size is set per sample from
the signal-to-noise ratio with batch-averaged norms, as Song et al. do (per-sample norms give
heavy-tailed steps in low dimension); a sample's result therefore depends on its batch through this
one scalar. ``pc`` applies ``corrector_steps`` such steps at each grid time
``t_i`` and then the predictor's step to ``t_{i+1}``; correcting before predicting keeps the score
away from the data end where it can be singular.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError
from flowbridge.fields.base import Field
from flowbridge.random import RandomSource, randn_like
from flowbridge._utils import TimePoint
from flowbridge.samplers.base import Solver, get_solver, prepare_times, register_solver
from flowbridge.samplers.sde.common import BrownianPath, check_score_field, plain_generator

# Keeps the step finite where the score vanishes (a sample exactly at a mode).
_MIN_SCORE_NORM = 1e-12


@dataclass(frozen=True)
class LangevinCorrector:
    """Unadjusted Langevin steps at a fixed time with the step size set from ``snr``.

    Args:
        steps: Langevin steps per call.
        snr: signal-to-noise ratio setting the step size.
    """

    steps: int = 1
    snr: float = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or self.steps < 0:
            raise ArgumentError(f"corrector steps must be an integer >= 0; got {self.steps!r}")
        if not isinstance(self.snr, (int, float)) or not self.snr > 0:
            raise ArgumentError(f"snr must be > 0; got {self.snr!r}")

    def correct(self, field: Field, x: Tensor, t: Tensor, *, generator: RandomSource = None) -> Tensor:
        """Applies :attr:`steps` Langevin steps targeting :math:`p_t` (one score evaluation each)."""
        dims = tuple(range(1, x.ndim))
        for _ in range(self.steps):
            score = field.score(x, t)
            noise = randn_like(x, generator=generator)
            # Batch-averaged norms as in Song et al.: per-sample ratios of two norms are heavy-tailed in
            # low dimension (a sample at a mode has a near-zero score and would take a huge step).
            score_norm = torch.linalg.vector_norm(score, dim=dims).mean().clamp_min(_MIN_SCORE_NORM)
            noise_norm = torch.linalg.vector_norm(noise, dim=dims).mean()
            delta = 2 * (self.snr * noise_norm / score_norm) ** 2
            x = x + delta * score + torch.sqrt(2 * delta) * noise
        return x


@dataclass(frozen=True)
class PCState:
    """The predictor's state and the grid times (:class:`~flowbridge._utils.TimePoint`)."""

    t: tuple[TimePoint, ...]
    inner: Any


@register_solver("pc")
class PredictorCorrector(Solver[PCState]):
    """Predictor–corrector: Langevin correction at ``t_i``, then one predictor step.

    Args:
        predictor: name of a fixed-step solver (``euler_maruyama``, ``ddpm_ancestral``, ``euler``, ...).
        corrector_steps: Langevin steps per grid time.
        snr: the corrector's signal-to-noise ratio.
        predictor_options: options of the predictor (e.g. ``{"noise_scale": 0.5}``).
    """

    order = 1.0
    stochastic = True

    def __init__(
        self, predictor: str = "euler_maruyama", corrector_steps: int = 1, snr: float = 0.1,
        predictor_options: dict[str, Any] | None = None,
    ) -> None:
        self.predictor = get_solver(predictor, **(predictor_options or {}))
        if self.predictor.nfe_per_step == 0:
            raise ArgumentError(f"pc needs a fixed-step predictor; {self.predictor.name!r} is adaptive")
        if isinstance(self.predictor, PredictorCorrector):
            raise ArgumentError("pc cannot wrap another pc solver")
        self.corrector = LangevinCorrector(steps=corrector_steps, snr=snr)
        # Configuration, not state: the cost of a step is fixed by the options.
        self.nfe_per_step = self.predictor.nfe_per_step + corrector_steps
        self.needs_gaussian_path = self.predictor.needs_gaussian_path
        self.min_steps = self.predictor.min_steps

    def check(self, field: Field, steps: int) -> None:
        super().check(field, steps)
        self.predictor.check(field, steps)
        check_score_field(field, self.name)

    def init(self, field: Field, x: Tensor, grid: Tensor, *, generator: RandomSource | BrownianPath = None) -> PCState:
        plain_generator(generator, self.name, "the Langevin corrector")
        points = prepare_times(self.name, field, grid[:-1], x, evaluates=("score",))
        return PCState(t=points, inner=self.predictor.init(field, x, grid, generator=generator))

    def step(
        self, field: Field, x: Tensor, state: PCState, i: int, *, generator: RandomSource | BrownianPath = None
    ) -> tuple[Tensor, PCState]:
        x = self.corrector.correct(field, x, state.t[i], generator=plain_generator(generator, self.name, "the Langevin corrector"))
        x, inner = self.predictor.step(field, x, state.inner, i, generator=generator)
        return x, PCState(t=state.t, inner=inner)
