"""The target protocol of :func:`flowbridge.smc.sample` and the small types the loop threads."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError
from flowbridge.fields.base import Field
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


class PointField(Field):
    r"""A field that answers at the particles from what the target already evaluated there.

    The kernel of a step (a registered solver's :meth:`~flowbridge.samplers.Solver.transition`)
    evaluates its field once, at ``(x, t_i)``: where the target has just evaluated the same field
    at the same particles (for its weights), this wrapper hands that evaluation over instead of
    paying for a second one. Asked at any other state (``y is not x``), it evaluates ``field``.

    Args:
        field: the field the particles' SDE is made of (:attr:`SMCTarget.field`).
        x: the particles, (N, ...).
        value: ``field``'s prediction at ``x`` in the parametrisation ``parametrisation``.
        parametrisation: what ``value`` is (``velocity``, ``data``, ``noise`` or ``score``).
    """

    def __init__(self, field: Field, x: Tensor, value: Tensor, parametrisation: str) -> None:
        super().__init__(field.path, parametrisation)
        self.inner, self.at, self.value = field, x, value

    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        if x is self.at:
            return self.value
        return getattr(self.inner, self.parametrisation)(x, t)


class SMCTarget(ABC):
    """A Feynman–Kac target: a family :math:`\\tilde q_t` of unnormalised densities along a Gaussian path.

    Implementations draw initial particles, evaluate what a step needs at the particles (the
    field's prediction and the weight rate or potential), and weigh one Gaussian move
    :math:`x' = m + s\\,\\xi` (:meth:`advance`). The move's mean and standard deviation come from a
    kernel: a registered solver's :meth:`~flowbridge.samplers.Solver.transition` on :attr:`field`
    (given the field's evaluation at the particles by :meth:`kernel_field`), or the built-in
    exponential move of :mod:`flowbridge.smc.coefficients` (:meth:`builtin_mean`).

    Attributes:
        path: the Gaussian path of the fields.
        field: the field whose marginal-preserving SDE the particles follow (annealed, summed or
            guided score; the prior for tilted targets); a plain :class:`~flowbridge.fields.Field`,
            so that ``flowbridge.sample(target.field, ...)`` runs the uncorrected heuristic.
        exponent_sum: :math:`B`: the target behaves like :math:`p_t^B` near the source.
        needs_noise: the weights need a stochastic kernel (standard deviation > 0).
    """

    path: GaussianPath
    field: Field
    exponent_sum: float = 1.0
    needs_noise: bool = False

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
    def kernel_field(self, x: Tensor, cache: PointCache) -> PointField:
        """:attr:`field` at the particles ``x``, answering from ``cache`` (no new evaluation)."""

    @abstractmethod
    def builtin_mean(self, x: Tensor, cache: PointCache, i: int, c: StepCoefficients) -> Tensor:
        """The mean of the built-in move ``c.move`` from ``c.t[i]`` to ``c.t[i+1]`` (its standard
        deviation is ``c.noise_std[i]``)."""

    @abstractmethod
    def advance(
        self, x: Tensor, cache: PointCache, mean: Tensor, std: Tensor | float, i: int, c: StepCoefficients, *,
        generator: RandomSource, weight_rule: str, final: bool,
    ) -> MoveResult:
        """Draws the move :math:`x' = m + s\\,\\xi` from ``c.t[i]`` to ``c.t[i+1]`` (twisted, for
        tilted targets), evaluates at :math:`x'` and returns the log-weight increments."""

    def move(
        self, x: Tensor, cache: PointCache, i: int, c: StepCoefficients, *, generator: RandomSource,
        weight_rule: str, final: bool,
    ) -> MoveResult:
        """One weighted built-in move (``c.move``) from ``c.t[i]`` to ``c.t[i+1]``."""
        mean = self.builtin_mean(x, cache, i, c)
        return self.advance(x, cache, mean, c.noise_std[i], i, c, generator=generator, weight_rule=weight_rule, final=final)

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
