"""The target protocol of :func:`flowbridge.smc.sample` and the small types the loop threads."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError
from flowbridge.paths.gaussian import GaussianPath
from flowbridge.random import RandomSource
from flowbridge.errors import SamplingError, WeightCollapseError  # noqa: F401  (re-exported)
from flowbridge.smc.coefficients import StepCoefficients


@dataclass(frozen=True)
class PointCache:
    """Per-particle quantities evaluated at the particles' current positions.

    Subclasses hold tensors with the particle dimension first; :meth:`take` reorders them along
    with the particles on resampling, and leaves non-tensor fields (flags) alone.
    """

    def take(self, ancestors: Tensor) -> "PointCache":
        values: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            values[f.name] = v.index_select(0, ancestors) if isinstance(v, Tensor) and v.ndim > 0 else v
        return type(self)(**values)


@dataclass(frozen=True)
class InitialParticles:
    """Initial particles drawn by a target.

    Attributes:
        x: (N, ...) positions at the first grid time.
        log_weights: (N,) initial log-weights.
        log_normalizer: log of the total mass the weighted particles represent at the start (known in
            closed form for the built-in initialisations), or ``None`` when it is unknown.
        nfe: field evaluations spent on the initialisation (per particle).
        acceptance: MCMC acceptance rate of the initialisation, if one was run.
        includes_potential: the particles were drawn from the twisted initial law already (pCNL),
            so a tilted target must not weight them by its initial potential again.
    """

    x: Tensor
    log_weights: Tensor
    log_normalizer: Tensor | None
    nfe: int = 0
    acceptance: Tensor | None = None
    includes_potential: bool = False


@dataclass(frozen=True)
class MoveResult:
    """One weighted move: the new positions, their cache and the log-weight increments (N,)."""

    x: Tensor
    cache: PointCache
    log_increment: Tensor


class SMCTarget(ABC):
    """A Feynman–Kac target: a family :math:`\\tilde q_t` of unnormalised densities along a Gaussian path.

    Implementations draw initial particles, evaluate what a step needs at the particles, and make
    one weighted Euler–Maruyama move whose weights keep the particle law equal to :math:`q_t`.
    """

    path: GaussianPath
    exponent_sum: float = 1.0  # B: the target behaves like p_t^B near the source

    @abstractmethod
    def initial(
        self, n: int, shape: tuple[int, ...], c: StepCoefficients, *, generator: RandomSource,
        dtype: torch.dtype, device: torch.device,
    ) -> InitialParticles:
        """Draws ``n`` particles of per-particle ``shape`` at ``c.t[0]``."""

    def start(self, init: InitialParticles, c: StepCoefficients, *, final: bool) -> tuple[PointCache, Tensor]:
        """The first evaluation at the initial particles and their log-weights."""
        return self.evaluate(init.x, 0, c, final=final), init.log_weights

    @abstractmethod
    def evaluate(self, x: Tensor, i: int, c: StepCoefficients, *, final: bool) -> PointCache:
        """Evaluates the fields (and potentials) at ``x`` and grid time ``c.t[i]``."""

    @abstractmethod
    def move(
        self, x: Tensor, cache: PointCache, i: int, c: StepCoefficients, *, generator: RandomSource,
        weight_rule: str, final: bool,
    ) -> MoveResult:
        """Moves from ``c.t[i]`` to ``c.t[i+1]`` and returns the weight increments."""

    @abstractmethod
    def nfe(self, steps: int, weight_rule: str) -> int:
        """Field evaluations per particle for ``steps`` moves (initialisation excluded)."""


def features(x: Tensor) -> int:
    """Number of features per particle."""
    return int(torch.Size(x.shape[1:]).numel())


def sum_features(v: Tensor) -> Tensor:
    """Sums a per-particle quantity over all its feature dimensions: (N, ...) -> (N,)."""
    return v.reshape(v.shape[0], -1).sum(dim=1)


def validate_log_potential(value: object, n: int, name: str) -> Tensor:
    """Checks a reward or log-potential evaluated on ``n`` particles: a floating (N,) tensor without
    NaN or ``+inf`` (``-inf`` is a hard zero). Called once, before the loop."""
    if not isinstance(value, Tensor) or not value.is_floating_point():
        raise ArgumentError(f"{name} must return a floating tensor of shape ({n},); got {type(value).__name__} {getattr(value, 'dtype', '')}")
    if value.shape != (n,):
        raise ArgumentError(f"{name} must return one value per particle, shape ({n},); got shape {tuple(value.shape)}")
    bad = torch.isnan(value) | (value == float("inf"))
    n_bad = int(bad.sum())  # sync-ok: one validation before the loop
    if n_bad:
        raise ArgumentError(f"{name} returned NaN or +inf for {n_bad} of {n} particles; it must be finite (or -inf for a hard constraint)")
    return value
