"""The objective protocol and its result type."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from torch import Tensor

from flowbridge.fields.base import Field
from flowbridge.random import RandomSource


@dataclass(frozen=True)
class ObjectiveOutput:
    """A loss and its parts.

    Attributes:
        loss: the scalar to minimise (mean of ``per_sample``).
        per_sample: (B,) loss of each sample.
        terms: named scalar components, for logging.
    """

    loss: Tensor
    per_sample: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)


def mean_over_features(err: Tensor) -> Tensor:
    """Squared error averaged over all but the batch dimension."""
    return err.reshape(err.shape[0], -1).mean(dim=1)


class Objective(ABC):
    """A training objective: ``objective(field, x0, x1, t, generator=...) -> ObjectiveOutput``.

    ``x0`` is the source sample (noise for Gaussian paths), ``x1`` the target (data), ``t`` (B,)
    the times; the coupling and the time distribution are the caller's.
    """

    @abstractmethod
    def __call__(
        self, field: Field, x0: Tensor, x1: Tensor, t: Tensor, *, generator: RandomSource = None
    ) -> ObjectiveOutput: ...
