r"""Time grids from ``t_start`` (source side) to ``t_end`` (target side).

Grids are built on the CPU in float64 (coefficients are then precomputed from them and moved to the
state's device once). ``logsnr`` and ``karras`` space the steps in :math:`\lambda = \log(\alpha/\sigma)`
and in :math:`\bar\sigma = \sigma/\alpha = e^{-\lambda}`; where the schedule reaches infinite
log-SNR (e.g. the linear path at ``t = 0`` and ``t = 1``) the grid is clipped to
:math:`\bar\sigma \in [\bar\sigma_{min}, \bar\sigma_{max}]` (EDM's 0.002 and 80 by default).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Callable

import torch
from torch import Tensor

from flowbridge._utils import register_in, registry_error
from flowbridge.errors import ArgumentError
from flowbridge.paths.schedules import Schedule

GridFn = Callable[..., Tensor]
GRIDS: dict[str, GridFn] = {}


def register_grid(name: str) -> Callable[[GridFn], GridFn]:
    """Function decorator adding a grid to :data:`GRIDS` under ``name`` (a taken name is refused)."""

    def wrap(fn: GridFn) -> GridFn:
        register_in(GRIDS, "grid", name, fn)
        return fn

    return wrap


@register_grid("uniform")
def uniform_grid(steps: int, t_start: float, t_end: float, schedule: Schedule | None = None) -> Tensor:
    """Equal steps in t."""
    return torch.linspace(t_start, t_end, steps + 1, dtype=torch.float64)


@register_grid("quadratic")
def quadratic_grid(steps: int, t_start: float, t_end: float, schedule: Schedule | None = None) -> Tensor:
    """Steps shrinking quadratically toward the data end (DDIM's quadratic spacing)."""
    u = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    return t_end - (t_end - t_start) * (1 - u) ** 2


def _sigma_bar_range(schedule: Schedule, t_start: float, t_end: float, sigma_bar_min: float, sigma_bar_max: float) -> tuple[float, float]:
    lam = schedule.log_snr(torch.tensor([t_start, t_end], dtype=torch.float64))
    hi = min(math.exp(-float(lam[0])) if math.isfinite(float(lam[0])) else math.inf, sigma_bar_max)
    lo = max(math.exp(-float(lam[1])) if math.isfinite(float(lam[1])) else 0.0, sigma_bar_min)
    return lo, hi


def _needs_schedule(name: str, schedule: Schedule | None) -> Schedule:
    if schedule is None:
        raise ArgumentError(f"the {name!r} grid needs a Gaussian schedule (a field on a GaussianPath)")
    return schedule


@register_grid("logsnr")
def logsnr_grid(
    steps: int, t_start: float, t_end: float, schedule: Schedule | None = None,
    sigma_bar_min: float = 0.002, sigma_bar_max: float = 80.0,
) -> Tensor:
    r"""Equal steps in half log-SNR :math:`\lambda` (DPM-Solver's default)."""
    schedule = _needs_schedule("logsnr", schedule)
    lo, hi = _sigma_bar_range(schedule, t_start, t_end, sigma_bar_min, sigma_bar_max)
    lam = torch.linspace(-math.log(hi), -math.log(lo), steps + 1, dtype=torch.float64)
    return _clip_ends(schedule.inverse_log_snr(lam), t_start, t_end)


@register_grid("karras")
def karras_grid(
    steps: int, t_start: float, t_end: float, schedule: Schedule | None = None, rho: float = 7.0,
    sigma_bar_min: float = 0.002, sigma_bar_max: float = 80.0,
) -> Tensor:
    r"""EDM's grid: :math:`\bar\sigma_i = (\bar\sigma_{max}^{1/\rho} + \tfrac{i}{N}(\bar\sigma_{min}^{1/\rho} - \bar\sigma_{max}^{1/\rho}))^\rho`."""
    schedule = _needs_schedule("karras", schedule)
    if not rho > 0:
        raise ArgumentError(f"karras rho must be > 0; got {rho}")
    lo, hi = _sigma_bar_range(schedule, t_start, t_end, sigma_bar_min, sigma_bar_max)
    u = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    sigma_bar = (hi ** (1 / rho) + u * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
    return _clip_ends(schedule.inverse_log_snr(-torch.log(sigma_bar)), t_start, t_end)


def _clip_ends(t: Tensor, t_start: float, t_end: float) -> Tensor:
    # The inverse log-SNR may overshoot the span by rounding; the span is authoritative.
    return t.clamp(min(t_start, t_end), max(t_start, t_end))


def explicit_grid(times: Sequence[float] | Tensor, steps: int, t_span: tuple[float, float] | None = None) -> Tensor:
    """An explicit grid (e.g. a tuned one, :mod:`flowbridge.samplers.tuning`) as float64 on the CPU.

    Args:
        times: ``steps + 1`` strictly increasing times in [0, 1] (a 1-D tensor or a sequence of numbers).
        steps: the number of steps the caller asked for; must be ``len(times) - 1``.
        t_span: if given, must equal ``(times[0], times[-1])``.

    Returns:
        (steps+1,) float64 CPU tensor, the same values (bit for bit for float64 input).

    Raises:
        ArgumentError: naming ``grid`` (or ``steps``, ``t_span``) and what was expected.
    """
    if isinstance(times, (str, bytes)) or not isinstance(times, (Tensor, Sequence)):
        raise ArgumentError(f"grid must be a registered grid name or a sequence of times; got {type(times).__name__}")
    try:
        # Python numbers straight to float64 (through float32 they would lose their low bits).
        t = (times if isinstance(times, Tensor) else torch.as_tensor(times, dtype=torch.float64)).detach().to(device="cpu", dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ArgumentError(f"grid must be a registered grid name or a 1-D sequence of times; got {times!r}") from None
    if t.ndim != 1 or t.shape[0] < 2:
        raise ArgumentError(f"grid must be a 1-D sequence of at least 2 times; got shape {tuple(t.shape)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps != t.shape[0] - 1:
        raise ArgumentError(f"steps must be len(grid) - 1 = {t.shape[0] - 1} with an explicit grid; got steps={steps!r}")
    if not bool(torch.isfinite(t).all()) or float(t.min()) < 0.0 or float(t.max()) > 1.0:
        raise ArgumentError(f"grid times must be finite and lie in [0, 1]; got {t.tolist()}")
    if not bool((t[1:] > t[:-1]).all()):
        raise ArgumentError(f"grid times must be strictly increasing (t=0 source to t=1 target); got {t.tolist()}")
    if t_span is not None and (float(t_span[0]), float(t_span[1])) != (float(t[0]), float(t[-1])):
        raise ArgumentError(f"t_span {tuple(t_span)} disagrees with the explicit grid's ends ({float(t[0])!r}, {float(t[-1])!r}); omit t_span")
    return t


def make_grid(
    name: str, steps: int, t_start: float, t_end: float, schedule: Schedule | None = None, **options: float
) -> Tensor:
    """Builds a registered grid (``uniform``, ``quadratic``, ``logsnr``, ``karras``), float64 CPU, (steps+1,)."""
    if name not in GRIDS:
        raise registry_error("grid", name, list(GRIDS))
    if not isinstance(steps, int) or steps < 1:
        raise ArgumentError(f"steps must be a positive integer; got {steps!r}")
    for label, value in (("t_start", t_start), ("t_end", t_end)):
        if not (0.0 <= value <= 1.0):
            raise ArgumentError(f"{label} must lie in [0, 1]; got {value}")
    if t_start == t_end:
        raise ArgumentError(f"t_start and t_end must differ (an empty time span); got t_start = t_end = {t_start}")
    grid = GRIDS[name](steps, t_start, t_end, schedule, **options)
    if not torch.isfinite(grid).all():
        raise ArgumentError(f"the {name!r} grid is not finite on [{t_start}, {t_end}] for {schedule!r}")
    return grid
