r"""Noise schedules for Gaussian paths :math:`x_t = \alpha(t) x_1 + \sigma(t) x_0`.

Time runs from ``t = 0`` (source: Gaussian noise) to ``t = 1`` (target: data). Diffusion schedules
are written in this convention: their "diffusion time" is ``s = 1 - t``. Each schedule returns a
:class:`ScheduleValues` dataclass with ``alpha, sigma`` and their time derivatives, and exposes the
half log-SNR :math:`\lambda(t) = \log(\alpha/\sigma)` and its inverse, which the exponential
integrators and the ``logsnr``/``karras`` grids need.

``t_min`` and ``t_max`` are the cut-offs inside which the schedule is regular (finite log-SNR and
derivatives); samplers start and stop there by default.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, ClassVar

import torch
from torch import Tensor

from flowbridge._utils import register_in, registry_error
from flowbridge.errors import ArgumentError


@dataclass(frozen=True)
class ScheduleValues:
    r"""Schedule coefficients at a time ``t``.

    Attributes:
        alpha: :math:`\alpha(t)`, the weight on the data ``x1``.
        sigma: :math:`\sigma(t)`, the weight on the noise ``x0``.
        d_alpha: :math:`\dot\alpha(t)`.
        d_sigma: :math:`\dot\sigma(t)`.
    """

    alpha: Tensor
    sigma: Tensor
    d_alpha: Tensor
    d_sigma: Tensor


SCHEDULES: dict[str, type["Schedule"]] = {}


def register_schedule(name: str) -> Callable[[type["Schedule"]], type["Schedule"]]:
    """Class decorator adding a schedule to :data:`SCHEDULES` under ``name``."""

    def wrap(cls: type[Schedule]) -> type[Schedule]:
        register_in(SCHEDULES, "schedule", name, cls)
        cls.name = name
        return cls

    return wrap


def get_schedule(name: str, **kwargs: float) -> "Schedule":
    """Builds a schedule from its registered name (``linear``, ``vp``, ``ve``, ``trig``)."""
    if name not in SCHEDULES:
        raise registry_error("schedule", name, list(SCHEDULES))
    return SCHEDULES[name](**kwargs)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Schedule(ABC):
    """A Gaussian-path schedule. Subclasses implement :meth:`__call__` and :meth:`inverse_log_snr`."""

    name: ClassVar[str] = "schedule"
    t_min: float = 0.0
    t_max: float = 1.0

    def __post_init__(self) -> None:
        if not (0.0 <= self.t_min < self.t_max <= 1.0):
            raise ArgumentError(f"need 0 <= t_min < t_max <= 1; got t_min={self.t_min}, t_max={self.t_max}")

    @abstractmethod
    def __call__(self, t: Tensor) -> ScheduleValues:
        """Returns alpha, sigma and their derivatives at ``t`` (any shape)."""

    def log_snr(self, t: Tensor) -> Tensor:
        r"""Half log signal-to-noise ratio :math:`\lambda(t) = \log\alpha(t) - \log\sigma(t)`."""
        v = self(t)
        return torch.log(v.alpha) - torch.log(v.sigma)

    def d_log_snr(self, t: Tensor) -> Tensor:
        r""":math:`\dot\lambda = \dot\alpha/\alpha - \dot\sigma/\sigma`."""
        v = self(t)
        return v.d_alpha / v.alpha - v.d_sigma / v.sigma

    @abstractmethod
    def inverse_log_snr(self, lam: Tensor) -> Tensor:
        r"""The time ``t`` with :math:`\lambda(t) = ` ``lam``."""

    def interpolate(self, x0: Tensor, x1: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        r""":math:`(x_t, \dot x_t) = (\alpha x_1 + \sigma x_0,\ \dot\alpha x_1 + \dot\sigma x_0)`, ``t`` broadcast against ``x0``."""
        v = self(t)
        return v.alpha * x1 + v.sigma * x0, v.d_alpha * x1 + v.d_sigma * x0


@register_schedule("linear")
@dataclass(frozen=True)
class LinearSchedule(Schedule):
    r"""Flow matching / rectified flow: :math:`\alpha = t`, :math:`\sigma = 1 - t`.

    Regular on the closed interval for velocity sampling; :math:`\lambda` is infinite at both ends.
    """

    def __call__(self, t: Tensor) -> ScheduleValues:
        one = torch.ones_like(t)
        return ScheduleValues(alpha=t, sigma=1 - t, d_alpha=one, d_sigma=-one)

    def inverse_log_snr(self, lam: Tensor) -> Tensor:
        return torch.sigmoid(lam)

    def interpolate(self, x0: Tensor, x1: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        # Two kernels instead of nine: this runs once per training step of every flow-matching model.
        velocity = x1 - x0
        return torch.addcmul(x0, t, velocity), velocity


@register_schedule("trig")
@dataclass(frozen=True)
class TrigSchedule(Schedule):
    r"""Trigonometric (variance preserving, cosine without offset): :math:`\alpha = \sin(\pi t/2)`,
    :math:`\sigma = \cos(\pi t/2)`."""

    def __call__(self, t: Tensor) -> ScheduleValues:
        h = 0.5 * math.pi
        return ScheduleValues(
            alpha=torch.sin(h * t), sigma=torch.cos(h * t), d_alpha=h * torch.cos(h * t), d_sigma=-h * torch.sin(h * t)
        )

    def inverse_log_snr(self, lam: Tensor) -> Tensor:
        return torch.atan(torch.exp(lam)) * (2.0 / math.pi)


@register_schedule("vp")
@dataclass(frozen=True)
class VPSchedule(Schedule):
    r"""Variance-preserving diffusion (DDPM / score SDE), :math:`\sigma = \sqrt{1 - \alpha^2}`.

    In diffusion time :math:`s = 1 - t`:

    * ``kind="linear"``: :math:`\beta(s) = \beta_{min} + s(\beta_{max} - \beta_{min})`,
      :math:`\log\alpha = -\tfrac14 s^2 (\beta_{max}-\beta_{min}) - \tfrac12 s \beta_{min}`;
    * ``kind="cosine"`` (Nichol & Dhariwal): :math:`\alpha = \cos(\phi(s)) / \cos(\phi(0))`,
      :math:`\phi(s) = \tfrac{\pi}{2} (s + c)/(1 + c)`.

    ``t_max < 1`` because :math:`\dot\sigma` is infinite where :math:`\sigma = 0`; the cosine
    schedule also needs ``t_min > 0`` because :math:`\alpha(0) = 0` (infinite log-SNR).
    """

    kind: str = "linear"
    beta_min: float = 0.1
    beta_max: float = 20.0
    cosine_offset: float = 0.008
    t_min: float = -1.0  # resolved in __post_init__ from `kind`
    t_max: float = 1.0 - 1e-3

    def __post_init__(self) -> None:
        if self.kind not in ("linear", "cosine"):
            raise ArgumentError(f"VPSchedule kind must be 'linear' or 'cosine'; got {self.kind!r}")
        if self.t_min == -1.0:  # the default: resolved from `kind`; other negative values are refused below
            object.__setattr__(self, "t_min", 0.0 if self.kind == "linear" else 1e-3)
        if self.kind == "linear" and not (0 < self.beta_min < self.beta_max):
            raise ArgumentError(f"need 0 < beta_min < beta_max; got {self.beta_min}, {self.beta_max}")
        super().__post_init__()

    def _log_alpha_and_rate(self, s: Tensor) -> tuple[Tensor, Tensor]:
        """log alpha and d(alpha)/dt (note: d/dt = -d/ds) as functions of diffusion time s."""
        if self.kind == "linear":
            delta = self.beta_max - self.beta_min
            log_alpha = -0.25 * s**2 * delta - 0.5 * s * self.beta_min
            alpha = torch.exp(log_alpha)
            return log_alpha, 0.5 * (self.beta_min + s * delta) * alpha
        c = self.cosine_offset
        scale = 0.5 * math.pi / (1 + c)
        phi = (s + c) * scale
        cos0 = math.cos(c * scale)
        alpha = torch.cos(phi) / cos0
        return torch.log(alpha), torch.sin(phi) * scale / cos0

    def __call__(self, t: Tensor) -> ScheduleValues:
        log_alpha, d_alpha = self._log_alpha_and_rate(1 - t)
        alpha = torch.exp(log_alpha)
        # sigma^2 = 1 - alpha^2 computed as -expm1 for accuracy near t = 1.
        sigma = torch.sqrt(-torch.expm1(2 * log_alpha))
        return ScheduleValues(alpha=alpha, sigma=sigma, d_alpha=d_alpha, d_sigma=-alpha * d_alpha / sigma)

    def inverse_log_snr(self, lam: Tensor) -> Tensor:
        # alpha^2 = sigmoid(2 lam), so log alpha = logsigmoid(2 lam) / 2.
        log_alpha = 0.5 * torch.nn.functional.logsigmoid(2 * lam)
        if self.kind == "linear":
            delta = self.beta_max - self.beta_min
            c = -log_alpha
            s = (-0.5 * self.beta_min + torch.sqrt(0.25 * self.beta_min**2 + delta * c)) / (0.5 * delta)
            return 1 - s
        c = self.cosine_offset
        scale = 0.5 * math.pi / (1 + c)
        phi = torch.acos(torch.exp(log_alpha) * math.cos(c * scale))
        return 1 - (phi / scale - c)


@register_schedule("ve")
@dataclass(frozen=True)
class VESchedule(Schedule):
    r"""Variance-exploding (EDM / Karras when paired with the ``karras`` grid): :math:`\alpha = 1`,
    :math:`\sigma(t) = \sigma_{max} (\sigma_{min}/\sigma_{max})^t`, geometric from
    :math:`\sigma_{max}` at ``t = 0`` to :math:`\sigma_{min}` at ``t = 1``.

    The source distribution is :math:`N(0, \sigma_{max}^2 I)` (the data are negligible there).
    """

    sigma_min: float = 0.002
    sigma_max: float = 80.0

    def __post_init__(self) -> None:
        if not (0 < self.sigma_min < self.sigma_max):
            raise ArgumentError(f"need 0 < sigma_min < sigma_max; got {self.sigma_min}, {self.sigma_max}")
        super().__post_init__()

    @property
    def _log_ratio(self) -> float:
        return math.log(self.sigma_min / self.sigma_max)

    def __call__(self, t: Tensor) -> ScheduleValues:
        sigma = self.sigma_max * torch.exp(t * self._log_ratio)
        one = torch.ones_like(t)
        return ScheduleValues(alpha=one, sigma=sigma, d_alpha=torch.zeros_like(t), d_sigma=sigma * self._log_ratio)

    def inverse_log_snr(self, lam: Tensor) -> Tensor:
        return (-lam - math.log(self.sigma_max)) / self._log_ratio
