r"""Gaussian probability paths and conversions between parametrisations.

For :math:`x_t = \alpha_t x_1 + \sigma_t x_0` with :math:`x_0 \sim N(0, I)` every field over the
path is determined by the pair of posterior means :math:`(\hat x_1, \hat x_0) =
(E[x_1|x_t], E[x_0|x_t])`, which satisfy :math:`x_t = \alpha_t \hat x_1 + \sigma_t \hat x_0`. The four
parametrisations are

* ``data``: :math:`\hat x_1`;
* ``noise``: :math:`\hat x_0`;
* ``velocity``: :math:`u = \dot\alpha_t \hat x_1 + \dot\sigma_t \hat x_0` (the probability-flow ODE);
* ``score``: :math:`\nabla \log p_t(x_t) = -\hat x_0 / \sigma_t`.

All conversions are affine for fixed ``t``: ``target = A(t) x + B(t) value``
(:func:`conversion_coefficients`). At a :class:`~flowbridge._utils.TimePoint` the coefficients are
Python floats computed on the host, so a conversion inside a step loop costs two kernels and no
schedule evaluation on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union

import torch
from torch import Tensor

from flowbridge._utils import (
    TimePoint,
    as_time,
    check_state,
    check_unit_interval,
    expand_like,
    host_to_device,
    registry_error,
    safe_div,
)
from flowbridge.errors import ArgumentError
from flowbridge.paths.schedules import Schedule, ScheduleValues, get_schedule

Scalar = Union[float, Tensor]

Parametrisation = Literal["velocity", "data", "noise", "score"]
PARAMETRISATIONS: tuple[str, ...] = ("velocity", "data", "noise", "score")


@dataclass(frozen=True)
class PathSample:
    """A draw from a conditional path.

    Attributes:
        x_t: the interpolated state.
        dx_t: its time derivative (the conditional velocity, flow matching's regression target).
        t: the times, shape (B,).
        x0: the source (noise) sample.
        x1: the target (data) sample.
    """

    x_t: Tensor
    dx_t: Tensor
    t: Tensor
    x0: Tensor
    x1: Tensor


def check_parametrisation(name: str) -> None:
    """Raises ValueError listing the known parametrisations if ``name`` is not one of them."""
    if name not in PARAMETRISATIONS:
        raise registry_error("parametrisation", name, PARAMETRISATIONS)


def _div(a: Scalar, b: Scalar) -> Scalar:
    return a / b if isinstance(a, Tensor) or isinstance(b, Tensor) else safe_div(a, b)


def conversion_coefficients(
    source: str, target: str, alpha: Scalar, sigma: Scalar, d_alpha: Scalar, d_sigma: Scalar
) -> tuple[Scalar, Scalar]:
    r"""``(A, B)`` with ``target = A x + B value`` for a prediction ``value`` in ``source`` at ``x``.

    Every parametrisation is an affine function of the posterior means
    :math:`(\hat x_1, \hat x_0)`, which solve :math:`x = \alpha\hat x_1 + \sigma\hat x_0` together
    with the prediction; composing the two affine maps gives ``(A, B)``. Works on Python floats
    (IEEE ``inf``/``nan`` where a coefficient is not finite) and on tensors alike.
    """
    # (x1_hat, x0_hat) = (p1 x + q1 v, p0 x + q0 v)
    if source == "data":
        p1, q1, p0, q0 = 0.0, 1.0, _div(1.0, sigma), _div(-alpha, sigma)
    elif source == "noise":
        p1, q1, p0, q0 = _div(1.0, alpha), _div(-sigma, alpha), 0.0, 1.0
    elif source == "score":
        p1, q1, p0, q0 = _div(1.0, alpha), _div(sigma * sigma, alpha), 0.0, -sigma
    else:  # velocity: solve [[alpha, sigma], [d_alpha, d_sigma]] (x1, x0) = (x, u)
        det = alpha * d_sigma - sigma * d_alpha
        p1, q1, p0, q0 = _div(d_sigma, det), _div(-sigma, det), _div(-d_alpha, det), _div(alpha, det)
    # target = u1 x1_hat + u0 x0_hat
    if target == "data":
        return p1, q1
    if target == "noise":
        return p0, q0
    if target == "velocity":
        return d_alpha * p1 + d_sigma * p0, d_alpha * q1 + d_sigma * q0
    minus_inv_sigma = _div(-1.0, sigma)
    return minus_inv_sigma * p0, minus_inv_sigma * q0


def apply_affine(a: Scalar, b: Scalar, x: Tensor, value: Tensor) -> Tensor:
    """``a x + b value``; with Python floats two kernels (``mul``, then ``add`` with ``alpha=a``)."""
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return a * x + b * value
    if a == 0.0:
        return value * b
    return torch.add(value * b, x, alpha=a)


ConversionPair = tuple[str, str]


def schedule_rows(path: Any, times: Tensor) -> list[tuple[float, float, float, float]] | None:
    """:math:`(\\alpha, \\sigma, \\dot\\alpha, \\dot\\sigma)` at each of ``times`` (float64 CPU) as
    Python floats, from one evaluation of the schedule; ``None`` off a Gaussian path."""
    if not isinstance(path, GaussianPath):
        return None
    v = path.schedule(times)
    rows = torch.stack([v.alpha, v.sigma, v.d_alpha, v.d_sigma], 1).tolist()  # sync-ok: CPU, before the loop
    return [tuple(r) for r in rows]  # type: ignore[misc]


def time_points(
    path: Any, times: Sequence[float] | Tensor, like: Tensor, *, conversions: Sequence[ConversionPair] = ()
) -> tuple[TimePoint, ...]:
    """Prepares evaluation times for a step loop over ``like``'s batch, device and dtype.

    One host-to-device copy for all the times (non-blocking on CUDA) and, on a
    :class:`GaussianPath`, the schedule at each time evaluated once in float64 on the host, with
    the coefficients of the ``conversions`` the loop will make.

    Args:
        path: the field's path (a :class:`GaussianPath`, an interpolant, or ``None``).
        times: the times, as floats or a 1-D tensor.
        like: the state (batch, ...).
        conversions: ``(source, target)`` parametrisation pairs to precompute.
    """
    check_state(like)
    t64 = torch.as_tensor(times, dtype=torch.float64).detach().to("cpu").reshape(-1)
    on_device = host_to_device(t64, like)
    batch = like.shape[0]
    rows = schedule_rows(path, t64)
    points = []
    for k, value in enumerate(t64.tolist()):  # sync-ok: CPU tensor, before the loop
        row = rows[k] if rows is not None else None
        table = {pair: conversion_coefficients(*pair, *row) for pair in conversions} if row is not None else {}
        points.append(TimePoint(tensor=on_device[k].expand(batch), value=value, schedule=row, conversions=table))
    return tuple(points)


@dataclass(frozen=True)
class GaussianPath:
    r"""The Gaussian path :math:`x_t = \alpha(t) x_1 + \sigma(t) x_0` of a schedule.

    Args:
        schedule: a :class:`~flowbridge.paths.Schedule` or a registered schedule name.
    """

    schedule: Schedule

    def __init__(self, schedule: Schedule | str) -> None:
        if not isinstance(schedule, (Schedule, str)):
            raise ArgumentError(f"schedule must be a Schedule or a registered schedule name; got {type(schedule).__name__}")
        object.__setattr__(self, "schedule", get_schedule(schedule) if isinstance(schedule, str) else schedule)

    @property
    def t_min(self) -> float:
        return self.schedule.t_min

    @property
    def t_max(self) -> float:
        return self.schedule.t_max

    def coefficients(self, t: Tensor | float, x: Tensor) -> ScheduleValues:
        """Schedule values at ``t``, reshaped to broadcast against ``x``."""
        v = self.schedule(expand_like(as_time(t, x), x))
        return v

    def sample(self, x0: Tensor, x1: Tensor, t: Tensor) -> PathSample:
        """Interpolates ``x_t`` and its conditional velocity for paired ``(x0, x1)`` at times ``t`` (B,)."""
        check_state(x0, "x0")
        check_state(x1, "x1")
        if x0.shape != x1.shape:
            raise ArgumentError(f"x0 and x1 must have the same shape; got {tuple(x0.shape)} and {tuple(x1.shape)}")
        check_unit_interval(t)
        x_t, dx_t = self.schedule.interpolate(x0, x1, expand_like(as_time(t, x1), x1))
        return PathSample(x_t=x_t, dx_t=dx_t, t=t, x0=x0, x1=x1)

    def target(self, sample: PathSample, parametrisation: str) -> Tensor:
        """The regression target of a parametrisation for a conditional sample."""
        check_parametrisation(parametrisation)
        if parametrisation == "velocity":
            return sample.dx_t
        if parametrisation == "data":
            return sample.x1
        if parametrisation == "noise":
            return sample.x0
        sigma = self.coefficients(sample.t, sample.x1).sigma
        return -sample.x0 / sigma

    def schedule_at(self, t: Tensor | float | TimePoint, x: Tensor) -> tuple[Scalar, Scalar, Scalar, Scalar]:
        r""":math:`(\alpha, \sigma, \dot\alpha, \dot\sigma)` at ``t``: the precomputed floats of a
        :class:`~flowbridge._utils.TimePoint`, else tensors broadcast against ``x``."""
        if isinstance(t, TimePoint) and t.schedule is not None:
            return t.schedule
        c = self.coefficients(t, x)
        return c.alpha, c.sigma, c.d_alpha, c.d_sigma

    def conversion(self, source: str, target: str, x: Tensor, t: Tensor | float | TimePoint) -> tuple[Scalar, Scalar]:
        """``(A, B)`` with ``target = A x + B value`` at ``t`` (see :func:`conversion_coefficients`)."""
        if isinstance(t, TimePoint):
            known = t.conversions.get((source, target))
            if known is not None:
                return known
        check_parametrisation(source)
        check_parametrisation(target)
        return conversion_coefficients(source, target, *self.schedule_at(t, x))

    def to_posterior_means(self, value: Tensor, source: str, x: Tensor, t: Tensor | float) -> tuple[Tensor, Tensor]:
        r"""Converts a prediction to :math:`(\hat x_1, \hat x_0)`."""
        check_parametrisation(source)
        schedule = self.schedule_at(t, x)
        x1_hat = value if source == "data" else apply_affine(*conversion_coefficients(source, "data", *schedule), x, value)
        x0_hat = value if source == "noise" else apply_affine(*conversion_coefficients(source, "noise", *schedule), x, value)
        return x1_hat, x0_hat

    def from_posterior_means(self, x1_hat: Tensor, x0_hat: Tensor, target: str, x: Tensor, t: Tensor | float) -> Tensor:
        r"""Expresses :math:`(\hat x_1, \hat x_0)` in the ``target`` parametrisation."""
        check_parametrisation(target)
        if target == "data":
            return x1_hat
        if target == "noise":
            return x0_hat
        _, sigma, d_alpha, d_sigma = self.schedule_at(t, x)
        if target == "velocity":
            return apply_affine(d_alpha, d_sigma, x1_hat, x0_hat)
        return x0_hat * _div(-1.0, sigma) if not isinstance(sigma, Tensor) else -x0_hat / sigma

    def convert(self, value: Tensor, source: str, target: str, x: Tensor, t: Tensor | float) -> Tensor:
        """Converts a prediction at ``(x, t)`` from one parametrisation to another.

        Example:
            >>> path = GaussianPath("linear")
            >>> v = path.convert(eps, "noise", "velocity", x, t)
        """
        check_state(value, "value")
        check_state(x, "x")
        if value.shape != x.shape:
            raise ArgumentError(f"value must have the shape of x {tuple(x.shape)}; got {tuple(value.shape)}")
        if source == target:
            check_parametrisation(source)
            return value
        return apply_affine(*self.conversion(source, target, x, t), x, value)

    def prior_sample(self, shape: tuple[int, ...], t: float, *, noise: Tensor) -> Tensor:
        r"""Scales standard normal ``noise`` to the source marginal at time ``t``: :math:`\sigma(t)\,\epsilon`.

        Exact at ``t = 0`` for schedules with :math:`\alpha(0) = 0`; for the cut-offs ``t_min > 0``
        and VE's :math:`\sigma_{max}` the data term :math:`\alpha(t) x_1` is neglected, as usual.
        """
        sigma = self.schedule(torch.tensor(float(t), dtype=torch.float64)).sigma
        return noise * sigma.to(noise.dtype)
