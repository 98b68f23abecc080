r"""Gaussian probability paths and conversions between parametrisations.

For :math:`x_t = \alpha_t x_1 + \sigma_t x_0` with :math:`x_0 \sim N(0, I)` every field over the
path is determined by the pair of posterior means :math:`(\hat x_1, \hat x_0) =
(E[x_1|x_t], E[x_0|x_t])`, which satisfy :math:`x_t = \alpha_t \hat x_1 + \sigma_t \hat x_0`. The four
parametrisations are

* ``data``: :math:`\hat x_1`;
* ``noise``: :math:`\hat x_0`;
* ``velocity``: :math:`u = \dot\alpha_t \hat x_1 + \dot\sigma_t \hat x_0` (the probability-flow ODE);
* ``score``: :math:`\nabla \log p_t(x_t) = -\hat x_0 / \sigma_t`.

All conversions are affine in the prediction for fixed ``(x, t)`` and pass through the pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from flowbridge._utils import as_time, check_state, check_unit_interval, expand_like, registry_error
from flowbridge.paths.schedules import Schedule, ScheduleValues, get_schedule

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


@dataclass(frozen=True)
class GaussianPath:
    r"""The Gaussian path :math:`x_t = \alpha(t) x_1 + \sigma(t) x_0` of a schedule.

    Args:
        schedule: a :class:`~flowbridge.paths.Schedule` or a registered schedule name.
    """

    schedule: Schedule

    def __init__(self, schedule: Schedule | str) -> None:
        if not isinstance(schedule, (Schedule, str)):
            raise TypeError(f"schedule must be a Schedule or a registered schedule name; got {type(schedule).__name__}")
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
            raise ValueError(f"x0 and x1 must have the same shape; got {tuple(x0.shape)} and {tuple(x1.shape)}")
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

    def to_posterior_means(self, value: Tensor, source: str, x: Tensor, t: Tensor | float) -> tuple[Tensor, Tensor]:
        r"""Converts a prediction to :math:`(\hat x_1, \hat x_0)`."""
        check_parametrisation(source)
        c = self.coefficients(t, x)
        if source == "data":
            return value, (x - c.alpha * value) / c.sigma
        if source in ("noise", "score"):
            x0_hat = value if source == "noise" else -c.sigma * value
            return (x - c.sigma * x0_hat) / c.alpha, x0_hat
        # velocity: solve [[alpha, sigma], [d_alpha, d_sigma]] (x1, x0) = (x, u).
        det = c.alpha * c.d_sigma - c.sigma * c.d_alpha
        return (c.d_sigma * x - c.sigma * value) / det, (c.alpha * value - c.d_alpha * x) / det

    def from_posterior_means(self, x1_hat: Tensor, x0_hat: Tensor, target: str, x: Tensor, t: Tensor | float) -> Tensor:
        r"""Expresses :math:`(\hat x_1, \hat x_0)` in the ``target`` parametrisation."""
        check_parametrisation(target)
        if target == "data":
            return x1_hat
        if target == "noise":
            return x0_hat
        c = self.coefficients(t, x)
        if target == "velocity":
            return c.d_alpha * x1_hat + c.d_sigma * x0_hat
        return -x0_hat / c.sigma

    def convert(self, value: Tensor, source: str, target: str, x: Tensor, t: Tensor | float) -> Tensor:
        """Converts a prediction at ``(x, t)`` from one parametrisation to another.

        Example:
            >>> path = GaussianPath("linear")
            >>> v = path.convert(eps, "noise", "velocity", x, t)
        """
        check_state(value, "value")
        check_state(x, "x")
        if value.shape != x.shape:
            raise ValueError(f"value must have the shape of x {tuple(x.shape)}; got {tuple(value.shape)}")
        if source == target:
            check_parametrisation(source)
            return value
        x1_hat, x0_hat = self.to_posterior_means(value, source, x, t)
        return self.from_posterior_means(x1_hat, x0_hat, target, x, t)

    def prior_sample(self, shape: tuple[int, ...], t: float, *, noise: Tensor) -> Tensor:
        r"""Scales standard normal ``noise`` to the source marginal at time ``t``: :math:`\sigma(t)\,\epsilon`.

        Exact at ``t = 0`` for schedules with :math:`\alpha(0) = 0`; for the cut-offs ``t_min > 0``
        and VE's :math:`\sigma_{max}` the data term :math:`\alpha(t) x_1` is neglected, as usual.
        """
        sigma = self.schedule(torch.tensor(float(t), dtype=torch.float64)).sigma
        return noise * sigma.to(noise.dtype)
