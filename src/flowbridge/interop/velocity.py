"""Velocity models trained elsewhere (torchcfm, facebookresearch/flow_matching, ...) as fields."""

from __future__ import annotations

from typing import Any, Callable

from torch import Tensor, nn

from flowbridge._utils import as_time
from flowbridge.errors import ArgumentError
from flowbridge.fields.base import Field
from flowbridge.paths.gaussian import GaussianPath

CONVENTIONS = ("noise_to_data", "data_to_noise")


class VelocityField(Field):
    """A callable ``v(x, t)`` read as a probability-flow velocity; see :func:`from_velocity`."""

    def __init__(
        self, model: Callable[..., Tensor], path: GaussianPath | None, convention: str, t_scale: float,
        call: str, condition: dict[str, Any] | None,
    ) -> None:
        super().__init__(path, "velocity")
        self.model = model if isinstance(model, nn.Module) else _Wrapped(model)
        self.convention, self.t_scale, self.call = convention, float(t_scale), call
        self.condition = dict(condition or {})

    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        t = as_time(t, x)
        t_batch = t.expand(x.shape[0]) if t.ndim == 0 else t
        model_t = (t_batch if self.convention == "noise_to_data" else 1 - t_batch) * self.t_scale
        out = self.model(model_t, x, **self.condition) if self.call == "t_first" else self.model(x, model_t, **self.condition)
        # A data-to-noise model's time runs backwards, so its velocity has the opposite sign.
        return out if self.convention == "noise_to_data" else -out


class _Wrapped(nn.Module):
    def __init__(self, fn: Callable[..., Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        return self.fn(*args, **kwargs)


def from_velocity(
    model: Callable[..., Tensor],
    path: GaussianPath | str | None = "linear",
    *,
    convention: str = "noise_to_data",
    t_scale: float = 1.0,
    call: str = "x_first",
    condition: dict[str, Any] | None = None,
) -> VelocityField:
    """Wraps a velocity model trained with another library.

    Args:
        model: ``model(x, t)`` (``call="x_first"``, torchcfm's ``net(x, t)`` after concatenation
            wrappers, flow_matching's ``model(x=..., t=...)`` positional order) or ``model(t, x)``
            (``call="t_first"``, torchdiffeq / torchdyn style).
        path: the Gaussian path it was trained on (``"linear"`` for CFM / OT-CFM / rectified flow,
            whose conditional path is :math:`t x_1 + (1-t) x_0`), or ``None`` for a bare velocity
            (ODE solvers only).
        convention: ``"noise_to_data"`` (t=0 noise, t=1 data: torchcfm, flow_matching) or
            ``"data_to_noise"`` (t=0 data, e.g. diffusers' flow-matching sigmas).
        t_scale: the model's time unit (e.g. 1000 for models trained on integer-like times).
        condition: keyword arguments passed to every call.
    """
    if convention not in CONVENTIONS:
        raise ArgumentError(f"unknown convention {convention!r}; known conventions: {', '.join(CONVENTIONS)}")
    if not callable(model):
        raise ArgumentError(f"model must be callable, model(x, t) -> velocity; got {type(model).__name__}")
    if call not in ("x_first", "t_first"):
        raise ArgumentError(f"call must be 'x_first' or 't_first'; got {call!r}")
    if not t_scale > 0:
        raise ArgumentError(f"t_scale must be > 0; got {t_scale}")
    if isinstance(path, str):
        path = GaussianPath(path)
    if path is not None and not isinstance(path, GaussianPath):
        raise ArgumentError(f"path must be a GaussianPath, a schedule name or None; got {type(path).__name__}")
    return VelocityField(model, path, convention, t_scale, call, condition)
