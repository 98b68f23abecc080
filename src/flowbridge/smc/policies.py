r"""When to resample.

A policy answers, after the weights of step ``i`` are updated, whether to resample. The answer is a
Python ``bool`` when it depends on ``i`` only (the loop then skips or runs the resampler) and a
0-dim bool tensor when it depends on the weights (the loop then resamples unconditionally and keeps
the result with ``torch.where``), so that no policy ever forces a host sync.

* :class:`EveryStep` — resample at every step from step ``warmup`` on (the FKC reference code's
  choice: systematic resampling after a warm-up of 10–30 steps).
* :class:`ESSBelow` — resample when :math:`\mathrm{ESS} < \text{threshold}\cdot N` (the classical
  adaptive rule; 0.5 is customary).
* :class:`Never` — sequential importance sampling: weights accumulate, particles never interact.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from torch import Tensor

from flowbridge.errors import ArgumentError
from flowbridge._utils import registry_error
from flowbridge.smc.resampling import RESAMPLERS, get_resampler


@dataclass(frozen=True)
class ResamplePolicy(ABC):
    """Base class of resampling policies.

    Attributes:
        method: the resampler (``systematic``, ``stratified``, ``multinomial``, ``residual``), also
            used for the final draw of equally weighted samples.
    """

    # Keyword-only, so that ESSBelow(0.5) and EveryStep(20) set the policy's own option.
    method: str = field(default="systematic", kw_only=True)

    def __post_init__(self) -> None:
        get_resampler(self.method)  # fail early with the known names

    @abstractmethod
    def decide(self, i: int, ess: Tensor, n: int) -> bool | Tensor:
        """Whether to resample after step ``i`` given the current ESS (0-dim) of ``n`` particles."""


@dataclass(frozen=True)
class EveryStep(ResamplePolicy):
    """Resample after every step ``i >= warmup``."""

    warmup: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise ArgumentError(f"warmup must be a non-negative integer; got {self.warmup!r}")

    def decide(self, i: int, ess: Tensor, n: int) -> bool:
        return i >= self.warmup


@dataclass(frozen=True)
class ESSBelow(ResamplePolicy):
    """Resample when the ESS falls below ``threshold * N`` (``threshold`` in (0, 1])."""

    threshold: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.threshold <= 1.0:
            raise ArgumentError(f"threshold must lie in (0, 1] (a fraction of the particle count); got {self.threshold!r}")

    def decide(self, i: int, ess: Tensor, n: int) -> Tensor:
        return ess < self.threshold * n


@dataclass(frozen=True)
class Never(ResamplePolicy):
    """Never resample inside the loop (importance sampling with the FK weights)."""

    def decide(self, i: int, ess: Tensor, n: int) -> bool:
        return False


POLICIES: dict[str, type[ResamplePolicy]] = {"every": EveryStep, "ess": ESSBelow, "never": Never}


def get_policy(policy: str | ResamplePolicy | None) -> ResamplePolicy:
    """A policy instance from a name (``every``, ``ess``, ``never``), ``None`` (= ``never``) or an instance."""
    if policy is None:
        return Never()
    if isinstance(policy, ResamplePolicy):
        return policy
    if isinstance(policy, str):
        if policy in POLICIES:
            return POLICIES[policy]()
        if policy in RESAMPLERS:
            raise ArgumentError(
                f"resample={policy!r} names a resampler, not a policy; use e.g. ESSBelow(method={policy!r}) "
                f"or EveryStep(method={policy!r})"
            )
        raise registry_error("resampling policy", policy, list(POLICIES))
    raise ArgumentError(f"resample must be a policy name, a ResamplePolicy or None; got {type(policy).__name__}")
