r"""Sample quality against a true sampler, next to its noise floor.

A single distance between ``n`` model samples and ``n`` true samples is itself a random variable:
on multimodal targets the sliced Wasserstein distance is dominated by fluctuations of the mode
weights and varies by ~40% between draws. :func:`compare_to_truth` therefore splits the model's
samples into ``R`` sets of ``n``, compares each with a fresh true set, and averages; the noise
floor is averaged over ``R`` independent true pairs the same way. For an exact sampler the two
averages have the same law, so their ratio concentrates at 1 with spread ~CV/sqrt(R).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from flowbridge._utils import check_state
from flowbridge.errors import ArgumentError
from flowbridge.metrics.noise_floor import NoiseFloor, noise_floor


@dataclass(frozen=True)
class QualityReport:
    """Model-vs-truth distance beside the truth-vs-truth noise floor.

    Attributes:
        value: mean distance between model sets and fresh true sets.
        floor: the noise floor at the same set size and repeats.
        n: points per set; sets: number of sets averaged.
    """

    value: float
    floor: NoiseFloor
    n: int
    sets: int

    @property
    def ratio(self) -> float:
        """``value / floor.mean``: 1 means indistinguishable from exact samples at this n."""
        return self.value / self.floor.mean

    def __str__(self) -> str:
        return f"{self.value:.4f} (noise floor {self.floor.mean:.4f}, ratio {self.ratio:.2f}, n={self.n} x {self.sets})"


def compare_to_truth(
    samples: Tensor,
    sample_fn: Callable[..., Tensor],
    metric: Callable[..., Tensor | float],
    *,
    sets: int = 5,
    generator: torch.Generator | None = None,
    **metric_kwargs: Any,
) -> QualityReport:
    """Averages ``metric`` between ``sets`` equal slices of ``samples`` and fresh true sets.

    Args:
        samples: (sets * n, ...) model samples.
        sample_fn: ``sample_fn(n, generator=...)`` drawing exact samples.
        metric: e.g. :func:`~flowbridge.metrics.sliced_wasserstein`.
        sets: number of slices ``R``.
        generator: randomness for the true draws and the metric's projections.
    """
    check_state(samples, "samples")
    if not isinstance(sets, int) or isinstance(sets, bool) or sets < 1:
        raise ArgumentError(f"sets must be a positive integer; got {sets!r}")
    if samples.device.type != "meta" and not bool(torch.isfinite(samples).all()):  # sync-ok: a metric, once
        raise ArgumentError("samples must be finite; they contain NaN or inf")
    if samples.shape[0] < 2 * sets:
        raise ArgumentError(f"samples must hold at least 2 points per set ({sets} sets); got {samples.shape[0]}")
    n = samples.shape[0] // sets
    floor = noise_floor(metric, sample_fn, n, repeats=sets, generator=generator, **metric_kwargs)
    kwargs = dict(metric_kwargs)
    if "generator" in metric.__code__.co_varnames if hasattr(metric, "__code__") else False:
        kwargs["generator"] = generator
    values = [
        float(metric(samples[r * n : (r + 1) * n], sample_fn(n, generator=generator).to(samples), **kwargs))
        for r in range(sets)
    ]
    return QualityReport(value=sum(values) / sets, floor=floor, n=n, sets=sets)
