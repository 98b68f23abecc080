"""Fields backed by a neural network."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from flowbridge._utils import as_time
from flowbridge.errors import ArgumentError
from flowbridge.fields.base import Field, Path, call_net


class NetworkField(Field):
    """A network ``net(x, t, **condition)`` read as a prediction in ``parametrisation`` on ``path``.

    Args:
        net: module called as ``net(x, t, **condition)`` with ``t`` of shape (B,).
        path: the Gaussian path (or interpolant) the net was trained on.
        parametrisation: what the net predicts: ``velocity``, ``data``, ``noise`` or ``score``.
        condition: keyword arguments passed to every call (e.g. ``{"y": labels}``).
    """

    def __init__(
        self, net: nn.Module, path: Path | None, parametrisation: str = "velocity", condition: dict[str, Any] | None = None
    ) -> None:
        if not callable(net):
            raise ArgumentError(f"net must be a callable network net(x, t, **condition); got {type(net).__name__}")
        super().__init__(path, parametrisation)
        self.net = net
        self.condition = dict(condition or {})

    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        return call_net(self.net, x, as_time(t, x), self.condition)

    def with_condition(self, **condition: Any) -> "NetworkField":
        """The same network with other conditioning (shares parameters)."""
        return NetworkField(self.net, self.path, self.parametrisation, {**self.condition, **condition})
