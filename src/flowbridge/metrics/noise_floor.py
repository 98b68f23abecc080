r"""The sampling noise floor of a distance metric: the yardstick for "close to the truth" tests.

A sample-based distance between a model and the true distribution is never exactly zero: even a
perfect model gives :math:`D(\hat p_n, \hat q_n) > 0` because both sample sets are finite. The noise
floor is the distribution of :math:`D` between two *independent* sets of :math:`n` true samples.
A test then states "the model's samples, compared with fresh true samples of the same size, lie
within 1.5x the noise floor", i.e. ``floor.ratio(metric(model_samples, true_samples)) <= 1.5``.
"""

from __future__ import annotations

import inspect
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError

__all__ = ["NoiseFloor", "noise_floor"]


@dataclass(frozen=True)
class NoiseFloor:
    r"""Summary of a metric's values between independent true-sample sets of equal size.

    Attributes:
        mean: :math:`\bar D = \frac{1}{R}\sum_r D_r`.
        std: the sample standard deviation :math:`\sqrt{\frac{1}{R-1}\sum_r (D_r - \bar D)^2}`
            (0 for a single repeat).
        values: the individual :math:`D_r`.
    """

    mean: float
    std: float
    values: tuple[float, ...]

    def ratio(self, value: float | Tensor) -> float:
        r"""Returns :math:`D / \bar D`, how many noise floors a measured distance is.

        Args:
            value: a metric value, as a float or a 0-dim tensor.

        Raises:
            ValueError: if the floor's mean is zero, so that no ratio is defined.
        """
        if self.mean == 0:
            raise ArgumentError("the noise floor's mean is 0, so a ratio to it is undefined")
        return float(value) / self.mean


def _accepts_generator(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` takes a ``generator`` keyword (explicitly or through ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        (p.name == "generator" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
        or p.kind is p.VAR_KEYWORD
        for p in params
    )


def noise_floor(
    metric: Callable[..., Tensor | float],
    sample_fn: Callable[..., Tensor],
    n: int,
    *,
    repeats: int = 5,
    generator: torch.Generator | None = None,
    **metric_kwargs: Any,
) -> NoiseFloor:
    r"""Measures a metric between independent sample sets of the true distribution.

    For :math:`r = 1..R`: draw :math:`a_r, b_r \sim p` with :math:`n` points each via
    ``sample_fn(n, generator=generator)`` and record :math:`D_r = \text{metric}(a_r, b_r)`.

    Args:
        metric: a distance such as :func:`~flowbridge.metrics.sliced_wasserstein`; it receives
            ``generator`` as well when its signature accepts one, so random metrics are reproducible.
        sample_fn: ``sample_fn(n, generator=...)`` returning (n, ...) samples of the true distribution.
        n: sample-set size; use the same size as the model-vs-truth comparison being judged, since
            the floor shrinks with :math:`n`.
        repeats: number :math:`R` of independent pairs.
        generator: the only source of randomness, shared by ``sample_fn`` and ``metric``.
        **metric_kwargs: forwarded to ``metric`` (e.g. ``n_projections``).

    Returns:
        A :class:`NoiseFloor` with the mean, standard deviation and individual values.

    Raises:
        ValueError: if ``n < 2``, ``repeats < 1`` or the metric returns a non-finite value.
    """
    if not isinstance(n, int) or n < 2:
        raise ArgumentError(f"n must be an integer >= 2; got {n!r}")
    if not isinstance(repeats, int) or repeats < 1:
        raise ArgumentError(f"repeats must be a positive integer; got {repeats!r}")
    kwargs = dict(metric_kwargs)
    if _accepts_generator(metric):
        kwargs["generator"] = generator
    values: list[float] = []
    for _ in range(repeats):
        a = sample_fn(n, generator=generator)
        b = sample_fn(n, generator=generator)
        value = float(metric(a, b, **kwargs))
        if not math.isfinite(value):
            raise ArgumentError(f"metric returned a non-finite value ({value}) on true samples")
        values.append(value)
    std = statistics.stdev(values) if repeats > 1 else 0.0
    return NoiseFloor(mean=statistics.fmean(values), std=std, values=tuple(values))
