"""Field wrappers that change how a field is evaluated, not what it computes."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from flowbridge._utils import TimePoint, as_time, check_state
from flowbridge.errors import ArgumentError
from flowbridge.fields.base import Field, check_field, sde_drift_from_prediction

_METHODS = ("predict", "velocity", "data", "noise", "score", "sde_drift")


class AutocastField(Field):
    """Evaluates ``inner`` under ``torch.autocast`` (bf16/fp16) and returns results in ``x``'s dtype.

    The solver's arithmetic stays in the state's dtype (fp32 or fp64); only the network runs in low
    precision, which is where the time goes.

    Args:
        inner: the field to evaluate.
        dtype: ``torch.bfloat16`` or ``torch.float16``.
    """

    def __init__(self, inner: Field, dtype: torch.dtype) -> None:
        check_field(inner, "inner")
        if dtype not in (torch.bfloat16, torch.float16):
            raise ArgumentError(f"autocast dtype must be torch.bfloat16 or torch.float16; got {dtype}")
        super().__init__(inner.path, inner.parametrisation)
        self.inner, self.dtype = inner, dtype

    def _call(self, name: str, x: Tensor, *args: Tensor) -> Tensor:
        check_state(x)  # x.device is read before the inner field could check it
        with torch.autocast(device_type=x.device.type, dtype=self.dtype):
            out = getattr(self.inner, name)(x, *args)
        return out.to(x.dtype)

    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        return self._call("predict", x, t)

    def velocity(self, x: Tensor, t: Tensor) -> Tensor:
        return self._call("velocity", x, t)

    def data(self, x: Tensor, t: Tensor) -> Tensor:
        return self._call("data", x, t)

    def noise(self, x: Tensor, t: Tensor) -> Tensor:
        return self._call("noise", x, t)

    def score(self, x: Tensor, t: Tensor) -> Tensor:
        return self._call("score", x, t)

    def sde_drift(self, x: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        return self._call("sde_drift", x, t, eps)


class CompiledField(Field):
    """``inner`` with each evaluation method compiled by ``torch.compile`` on first use.

    A :class:`~flowbridge._utils.TimePoint` is passed to the compiled code as its time tensor:
    the Python floats it carries differ at every step and would make ``torch.compile`` specialise
    (recompile) on each of them, where a tensor argument is traced once.

    Args:
        inner: the field to compile.
        **compile_options: passed to ``torch.compile`` (e.g. ``mode="max-autotune"``).
    """

    def __init__(self, inner: Field, **compile_options: Any) -> None:
        check_field(inner, "inner")
        super().__init__(inner.path, inner.parametrisation)
        self.inner = inner
        self._options = compile_options
        self._compiled: dict[str, Callable[..., Tensor]] = {}

    def _fn(self, name: str) -> Callable[..., Tensor]:
        # A cache of compiled callables, not solver state: it depends only on the method name.
        if name not in self._compiled:
            self._compiled[name] = torch.compile(getattr(self.inner, name), **self._options)
        return self._compiled[name]

    def _call(self, name: str, x: Tensor, t: Tensor | TimePoint, *args: Any) -> Tensor:
        return self._fn(name)(x, as_time(t, x), *args)

    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        return self._call("predict", x, t)

    def velocity(self, x: Tensor, t: Tensor) -> Tensor:
        return self._call("velocity", x, t)

    def data(self, x: Tensor, t: Tensor) -> Tensor:
        return self._call("data", x, t)

    def noise(self, x: Tensor, t: Tensor) -> Tensor:
        return self._call("noise", x, t)

    def score(self, x: Tensor, t: Tensor) -> Tensor:
        return self._call("score", x, t)

    def sde_drift(self, x: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        if not isinstance(eps, Tensor):  # a per-step float would recompile: compile the prediction only
            return sde_drift_from_prediction(self, x, t, eps)
        return self._call("sde_drift", x, t, eps)
