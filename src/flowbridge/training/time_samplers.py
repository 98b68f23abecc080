r"""Distributions of the training time ``t`` (t = 0 source/noise, t = 1 target/data).

Every sampler draws on the path's regular interval ``[t_min, t_max]`` (shrunk by ``margin``) so that
targets such as the interpolant's :math:`\dot\gamma z` stay finite.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from flowbridge._utils import finite_number as _finite_number
from flowbridge.errors import ArgumentError
from flowbridge.paths.gaussian import GaussianPath
from flowbridge.paths.interpolant import StochasticInterpolant
from flowbridge.random import RandomSource, rand, randn

Path = GaussianPath | StochasticInterpolant


def time_range(path: Path | None, margin: float) -> tuple[float, float]:
    """The interval ``[t_min + margin, t_max - margin]`` of ``path`` (``[0, 1]`` without a path).

    Raises:
        ValueError: if ``margin`` is negative or not finite (the interval would leave the path's),
            or leaves no room inside the interval.
    """
    margin = _finite_number(margin, "margin")
    if margin < 0:
        raise ArgumentError(f"margin must be >= 0 (a negative margin leaves the path's time interval); got {margin}")
    t_min, t_max = (path.t_min, path.t_max) if path is not None else (0.0, 1.0)
    lo, hi = t_min + margin, t_max - margin
    if not lo < hi:
        raise ArgumentError(f"margin={margin} leaves no room inside the path's time interval [{t_min}, {t_max}]")
    return lo, hi


class TimeSampler(ABC):
    """``sampler(n, path, generator=, device=, dtype=) -> (n,)`` training times.

    Args:
        margin: distance kept from the ends of the path's interval.
    """

    def __init__(self, margin: float = 0.0) -> None:
        if not 0.0 <= margin < 0.5:
            raise ArgumentError(f"margin must lie in [0, 0.5); got {margin}")
        self.margin = float(margin)

    @abstractmethod
    def __call__(
        self, n: int, path: Path | None, *, generator: RandomSource, device: torch.device, dtype: torch.dtype
    ) -> Tensor: ...


class UniformTime(TimeSampler):
    """:math:`t \\sim U[t_{min} + m, t_{max} - m]`."""

    def __call__(
        self, n: int, path: Path | None, *, generator: RandomSource, device: torch.device, dtype: torch.dtype
    ) -> Tensor:
        lo, hi = time_range(path, self.margin)
        u = rand((n,), generator=generator, dtype=dtype, device=device)
        # The affine map costs two kernel launches per step; skip it on the unit interval.
        return u if (lo, hi) == (0.0, 1.0) else lo + (hi - lo) * u


class LogitNormalTime(TimeSampler):
    r""":math:`t = \mathrm{sigmoid}(\mu + s\,\xi)`, :math:`\xi \sim N(0, 1)` (Esser et al. 2024), clamped to the range.

    Args:
        mean: :math:`\mu`; positive values favour the data end.
        std: :math:`s > 0`.
        margin: as in :class:`TimeSampler`.
    """

    def __init__(self, mean: float = 0.0, std: float = 1.0, margin: float = 0.0) -> None:
        super().__init__(margin)
        self.mean, self.std = _finite_number(mean, "mean"), _finite_number(std, "std", positive=True)

    def __call__(
        self, n: int, path: Path | None, *, generator: RandomSource, device: torch.device, dtype: torch.dtype
    ) -> Tensor:
        lo, hi = time_range(path, self.margin)
        xi = randn((n,), generator=generator, dtype=dtype, device=device)
        return torch.sigmoid(self.mean + self.std * xi).clamp(lo, hi)


class LogNormalNoiseTime(TimeSampler):
    r"""EDM's training noise levels: :math:`\log\bar\sigma \sim N(P_{mean}, P_{std}^2)` with
    :math:`\bar\sigma = \sigma_t/\alpha_t`, mapped to ``t`` through the schedule's inverse log-SNR
    (:math:`\lambda = -\log\bar\sigma`) and clamped to the path's range (Karras et al. 2022).

    Args:
        p_mean: :math:`P_{mean}` (EDM: -1.2).
        p_std: :math:`P_{std}` (EDM: 1.2).
        margin: as in :class:`TimeSampler`.

    Raises:
        TypeError: when called with a path that is not a :class:`GaussianPath`.
    """

    def __init__(self, p_mean: float = -1.2, p_std: float = 1.2, margin: float = 0.0) -> None:
        super().__init__(margin)
        self.p_mean, self.p_std = _finite_number(p_mean, "p_mean"), _finite_number(p_std, "p_std", positive=True)

    def __call__(
        self, n: int, path: Path | None, *, generator: RandomSource, device: torch.device, dtype: torch.dtype
    ) -> Tensor:
        if not isinstance(path, GaussianPath):
            raise ArgumentError(f"LogNormalNoiseTime needs a GaussianPath (noise levels); got {type(path).__name__}")
        lo, hi = time_range(path, self.margin)
        log_sigma_bar = self.p_mean + self.p_std * randn((n,), generator=generator, dtype=dtype, device=device)
        t = path.schedule.inverse_log_snr(-log_sigma_bar)
        return t.nan_to_num(nan=lo).clamp(lo, hi)


__all__ = ["LogNormalNoiseTime", "LogitNormalTime", "TimeSampler", "UniformTime", "time_range"]
