r"""The field of a Schrödinger bridge: a forward SDE drift :math:`b(x, t)` with a Brownian reference
of variance :math:`\varepsilon` (see :mod:`flowbridge.bridges.sde` for the sampler).

It lives with the fields (not with the bridges that learn it) so that closed-form bridges in
:mod:`flowbridge.analytic` can be one without importing the training layers.
"""

from __future__ import annotations

import math
from abc import abstractmethod

from torch import Tensor

from flowbridge.errors import ArgumentError, CapabilityError
from flowbridge.fields.base import Field
from flowbridge.paths.interpolant import BrownianBridge


def check_eps(eps: float, name: str = "eps") -> float:
    """Returns ``eps`` as a float after checking that it is a finite positive number."""
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        raise ArgumentError(f"{name} must be a positive float (the Brownian reference's variance); got {type(eps).__name__}")
    if not (math.isfinite(eps) and eps > 0):
        raise ArgumentError(f"{name} must be a finite number > 0 (the Brownian reference's variance); got {eps}")
    return float(eps)


class BridgeField(Field):
    r"""A field holding the forward drift :math:`b(x, t)` of a Schrödinger bridge with variance ``eps``.

    Its path is the reference Brownian bridge ``BrownianBridge(sqrt(eps))``. It is sampled with the
    ``"bridge_euler_maruyama"`` solver; the probability-flow quantities (``velocity``, ``score``,
    ...) are not available from the drift alone and raise.

    Args:
        eps: variance of the Brownian reference, :math:`\varepsilon > 0`.
    """

    eps: float

    def __init__(self, eps: float) -> None:
        eps = check_eps(eps)
        super().__init__(BrownianBridge(math.sqrt(eps)), "velocity")
        self.eps = eps

    @abstractmethod
    def drift(self, x: Tensor, t: Tensor | float) -> Tensor:
        r"""The forward SDE drift :math:`b(x, t)` at states ``x`` (B, d) and times ``t`` (scalar or (B,))."""

    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        return self.drift(x, t)

    def _no_flow(self, what: str) -> Tensor:
        raise CapabilityError(
            f"{type(self).__name__} holds a Schrödinger-bridge SDE drift, not a probability-flow {what}; "
            "sample it with solver='bridge_euler_maruyama'"
        )

    def velocity(self, x: Tensor, t: Tensor) -> Tensor:
        return self._no_flow("velocity")

    def score(self, x: Tensor, t: Tensor) -> Tensor:
        return self._no_flow("score")

    def data(self, x: Tensor, t: Tensor) -> Tensor:
        return self._no_flow("data prediction")

    def noise(self, x: Tensor, t: Tensor) -> Tensor:
        return self._no_flow("noise prediction")

    def sde_drift(self, x: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        return self._no_flow("SDE drift at a free noise level")

    def extra_repr(self) -> str:
        return f"eps={self.eps}"


__all__ = ["BridgeField"]
