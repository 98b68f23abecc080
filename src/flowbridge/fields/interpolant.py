r"""Fields over a stochastic interpolant: a drift network and a denoiser network."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from flowbridge._utils import as_time
from flowbridge.errors import ArgumentError
from flowbridge.fields.base import Field, call_net
from flowbridge.paths.interpolant import StochasticInterpolant


class InterpolantField(Field):
    r"""Drift :math:`\hat b(x, t)` and denoiser :math:`\hat\eta(x, t) \approx E[z|x_t]` of an interpolant.

    ``velocity`` is the drift (the probability-flow velocity); ``score`` is :math:`-\hat\eta/\gamma`.
    ``data``/``noise`` are not defined off a Gaussian path and raise.

    Args:
        drift: network ``drift(x, t, **condition)``.
        denoiser: network ``denoiser(x, t, **condition)``, or ``None`` for a drift-only (ODE) field.
        interpolant: the :class:`StochasticInterpolant` both were trained on.
        condition: keyword arguments passed to both networks.
    """

    def __init__(
        self, drift: nn.Module, denoiser: nn.Module | None, interpolant: StochasticInterpolant,
        condition: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(interpolant, "velocity")
        self.drift = drift
        self.denoiser = denoiser
        self.interpolant = interpolant
        self.condition = dict(condition or {})

    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        return call_net(self.drift, x, as_time(t, x), self.condition)

    def velocity(self, x: Tensor, t: Tensor) -> Tensor:
        return self.predict(x, t)

    def denoise(self, x: Tensor, t: Tensor) -> Tensor:
        r""":math:`\hat\eta(x, t) \approx E[z | x_t = x]`."""
        if self.denoiser is None:
            raise ArgumentError("this InterpolantField has no denoiser network, so it cannot give a score")
        return call_net(self.denoiser, x, as_time(t, x), self.condition)

    def score(self, x: Tensor, t: Tensor) -> Tensor:
        return self.interpolant.score_from_denoiser(self.denoise(x, t), x, t)

    def sde_drift(self, x: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        return self.velocity(x, t) + eps * self.score(x, t)
