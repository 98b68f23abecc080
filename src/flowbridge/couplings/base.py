"""The coupling protocol: how the (source, target) pairs of a training batch are matched."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from torch import Tensor

from flowbridge.errors import ArgumentError
from flowbridge.random import RandomSource


@dataclass
class CoupledBatch:
    """A batch of matched pairs.

    Attributes:
        x0: (B, ...) source samples, row ``i`` paired with ``x1[i]``.
        x1: (B, ...) target samples, in the order they were given (so labels stay aligned).
        source_index: (B,) long tensor, the row of the original ``x0`` that was paired with
            ``x1[i]``; ``None`` where the pairing is the identity.
    """

    x0: Tensor
    x1: Tensor
    source_index: Tensor | None = None


def check_pair_shapes(x0: Tensor, x1: Tensor, *, same_batch: bool) -> None:
    """Raises ValueError unless ``x0`` and ``x1`` are batches of samples of one shape."""
    if not isinstance(x0, Tensor) or not isinstance(x1, Tensor):
        raise ArgumentError(f"x0 and x1 must be tensors; got {type(x0).__name__} and {type(x1).__name__}")
    if not (x0.is_floating_point() and x1.is_floating_point()):
        raise ArgumentError(f"x0 and x1 must be floating-point tensors; got dtypes {x0.dtype} and {x1.dtype}")
    if x0.ndim < 2 or x1.ndim < 2:
        raise ArgumentError(f"x0 and x1 must have shape (B, ...); got {tuple(x0.shape)} and {tuple(x1.shape)}")
    if x0.shape[0] == 0 or x1.shape[0] == 0:
        raise ArgumentError(f"x0 and x1 must hold at least one sample each (an empty batch); got {tuple(x0.shape)} and {tuple(x1.shape)}")
    if x0.shape[1:] != x1.shape[1:]:
        raise ArgumentError(
            f"x0 and x1 must hold samples of one shape; got {tuple(x0.shape[1:])} and {tuple(x1.shape[1:])}"
        )
    if same_batch and x0.shape[0] != x1.shape[0]:
        raise ArgumentError(f"x0 and x1 must have the same batch size; got {x0.shape[0]} and {x1.shape[0]}")


class Coupling(ABC):
    """Draws the pairing of a batch: ``coupling(x0, x1, generator=g) -> CoupledBatch``.

    ``x1`` (the target, with any labels aligned to it) is never reordered; a coupling only chooses
    which source row goes with each target row, and it draws any randomness from ``generator``.
    """

    @abstractmethod
    def __call__(self, x0: Tensor, x1: Tensor, *, generator: RandomSource = None) -> CoupledBatch: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
