"""Small helpers shared across flowbridge (time broadcasting, validation)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError


def check_state(x: object, name: str = "x") -> None:
    """Raises a TypeError unless ``x`` is a floating-point tensor with a batch dimension.

    Metadata only (type, dtype, rank): no device synchronisation, so it may run inside step loops.
    """
    if not isinstance(x, Tensor):
        raise ArgumentError(f"{name} must be a torch.Tensor of shape (batch, ...); got {type(x).__name__}")
    if not x.is_floating_point():
        raise ArgumentError(f"{name} must be a floating-point tensor; got dtype {x.dtype}")
    if x.ndim < 1:
        raise ArgumentError(f"{name} must have a batch dimension, shape (batch, ...); got shape ()")


@dataclass(frozen=True, eq=False)
class TimePoint:
    r"""A time prepared once for the field evaluations of a step loop.

    Solvers build one per evaluation time before their loop (:func:`flowbridge.paths.time_points`),
    so that a step neither creates a tensor from a Python number on the device (a blocking copy on
    CUDA) nor recomputes the schedule there: a field reads the time for its network from
    :attr:`tensor` and converts between parametrisations with the Python floats of
    :attr:`schedule`, which enter the kernels as arguments.

    Attributes:
        tensor: the time broadcast to the batch, shape (B,), on the state's device and dtype.
        value: the same time as a Python float.
        schedule: :math:`(\alpha, \sigma, \dot\alpha, \dot\sigma)` at this time as Python floats on a
            Gaussian path, else ``None``.
        conversions: ``(A, B)`` of ``target = A x + B value`` for the ``(source, target)``
            parametrisation pairs the solver will ask for, computed before the loop.
    """

    tensor: Tensor
    value: float
    schedule: tuple[float, float, float, float] | None = None
    conversions: Mapping[tuple[str, str], tuple[float, float]] = field(default_factory=dict)


def as_time(t: Tensor | float | TimePoint, like: Tensor) -> Tensor:
    """Returns ``t`` as a tensor on ``like``'s device and dtype, shape () or (B,).

    Args:
        t: a float, a 0-dim tensor, a (B,) tensor of times or a :class:`TimePoint`.
        like: the state tensor ``x`` of shape (B, ...), whose device and dtype are used.

    Raises:
        TypeError: if ``like`` is not a floating-point tensor or ``t`` is not a number or tensor.
        ValueError: if ``t`` has more than one dimension or a batch size that disagrees with ``like``.
    """
    check_state(like)
    if isinstance(t, TimePoint):
        # Metadata only: the point was built for this state's batch, device and dtype.
        if t.tensor.shape[0] == like.shape[0] and t.tensor.dtype == like.dtype:
            return t.tensor
        return t.tensor[0].to(like.dtype)  # another batch (e.g. a guided pair): the scalar broadcasts
    if not isinstance(t, (Tensor, numbers.Real)) or isinstance(t, bool):
        raise ArgumentError(f"t must be a float or a tensor of times; got {type(t).__name__}")
    t = torch.as_tensor(t, device=like.device, dtype=like.dtype)  # sync-ok: a user passing a float t; step loops pass TimePoints
    if t.ndim > 1 or (t.ndim == 1 and t.shape[0] not in (1, like.shape[0])):
        raise ArgumentError(
            f"t must be a scalar or have shape ({like.shape[0]},) to match x; got shape {tuple(t.shape)}"
        )
    return t


def expand_like(t: Tensor, x: Tensor) -> Tensor:
    """Reshapes a () or (B,) tensor so that it broadcasts against ``x`` of shape (B, ...)."""
    if t.ndim == 0:
        return t
    return t.reshape(-1, *([1] * (x.ndim - 1)))


def check_unit_interval(t: Tensor | float, name: str = "t") -> None:
    """Raises a ValueError if a Python or CPU time lies outside [0, 1].

    Only host-side values are checked, so that no device synchronisation is introduced on GPU.
    """
    if isinstance(t, TimePoint):
        t = t.value
    if isinstance(t, (int, float)):
        bad = not (0.0 <= t <= 1.0) or math.isnan(t)
    elif isinstance(t, Tensor) and t.device.type == "cpu":
        if t.numel() == 0:
            return
        lo, hi = torch.aminmax(t)
        bad = not (0.0 <= float(lo) and float(hi) <= 1.0)  # written so that NaN is bad too
    else:
        return
    if bad:
        raise ArgumentError(f"{name} must lie in [0, 1] (t=0 is the source, t=1 the target); got {t}")


def host_to_device(values: Tensor, like: Tensor) -> Tensor:
    """``values`` (a CPU tensor) on ``like``'s device and dtype, without a blocking copy on CUDA.

    A copy from pageable host memory synchronises the CUDA stream; from pinned memory with
    ``non_blocking=True`` it is queued like a kernel (PyTorch's host allocator keeps the pinned
    buffer alive until the copy has run). Called before step loops, never inside one.
    """
    values = values.to(dtype=like.dtype)
    if like.device.type == "cuda":
        return values.pin_memory().to(like.device, non_blocking=True)
    return values.to(like.device)


def safe_div(a: float, b: float) -> float:
    """``a / b`` for Python floats with IEEE semantics (``±inf`` or ``nan`` for ``b = 0``) instead of
    ``ZeroDivisionError``, as tensor arithmetic gives: a coefficient that is not finite at some time
    must reach the caller's finiteness check, not raise deep inside a conversion."""
    if b != 0.0:
        return a / b
    if a == 0.0 or math.isnan(a):
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


def finite_number(value: object, name: str, *, positive: bool = False) -> float:
    """``value`` as a float; TypeError/ValueError naming ``name`` unless it is a finite real number
    (and, with ``positive``, > 0)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentError(f"{name} must be a finite real number; got {type(value).__name__}")
    if not math.isfinite(value):
        raise ArgumentError(f"{name} must be a finite real number; got {value}")
    if positive and not value > 0:
        raise ArgumentError(f"{name} must be > 0; got {value}")
    return float(value)


def register_in(registry: dict[str, Any], kind: str, name: str, obj: Any) -> None:
    """Adds ``obj`` to ``registry`` under ``name``; a name taken by another object is refused.

    Re-registering the same object (a module imported twice) is harmless; replacing it silently
    would change what every caller of that name gets.
    """
    if name in registry and registry[name] is not obj:
        raise ArgumentError(f"{kind} name {name!r} is already registered")
    registry[name] = obj


def registry_error(kind: str, name: str, known: list[str] | tuple[str, ...]) -> ArgumentError:
    """The error raised for an unknown name in any registry."""
    return ArgumentError(f"unknown {kind} {name!r}; known {kind}s: {', '.join(sorted(known))}")
