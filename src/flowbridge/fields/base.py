r"""The Field protocol: what every sampler consumes.

A field answers four questions at ``(x, t)``: ``velocity`` (the probability-flow ODE),
``data`` (:math:`E[x_1|x_t]`), ``noise`` (:math:`E[x_0|x_t]`) and ``score``
(:math:`\nabla\log p_t`). A subclass implements :meth:`Field.predict` in its native
parametrisation; the other three come from the path's conversions. Analytic fields override the
methods directly where they have better-conditioned closed forms.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from typing import Any

from torch import Tensor, nn

from flowbridge.errors import ArgumentError, CapabilityError
from flowbridge.paths.gaussian import GaussianPath, apply_affine, check_parametrisation
from flowbridge.paths.interpolant import StochasticInterpolant

Path = GaussianPath | StochasticInterpolant


class Field(nn.Module, ABC):
    """Base class of all fields.

    Attributes:
        path: the path the field lives on (a :class:`GaussianPath`, a
            :class:`StochasticInterpolant`, or ``None`` for a bare velocity field).
        parametrisation: what :meth:`predict` returns (``velocity``, ``data``, ``noise``, ``score``).
    """

    path: Path | None
    parametrisation: str

    def __init__(self, path: Path | None, parametrisation: str) -> None:
        super().__init__()
        check_parametrisation(parametrisation)
        self.path = path
        self.parametrisation = parametrisation

    @abstractmethod
    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        """The field's output in its native parametrisation."""

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.predict(x, t)

    @property
    def gaussian_path(self) -> GaussianPath:
        """The field's Gaussian path; raises a clear error where there is none."""
        if not isinstance(self.path, GaussianPath):
            raise CapabilityError(
                f"{type(self).__name__} has no Gaussian path (path={self.path!r}); this operation needs "
                "a field over a GaussianPath (velocity/data/noise/score conversions)"
            )
        return self.path

    def _as(self, target: str, x: Tensor, t: Tensor) -> Tensor:
        if target == self.parametrisation:
            return self.predict(x, t)
        path = self.gaussian_path  # fail clearly before evaluating the network
        return path.convert(self.predict(x, t), self.parametrisation, target, x, t)

    def velocity(self, x: Tensor, t: Tensor) -> Tensor:
        """Velocity of the probability-flow ODE at ``(x, t)``."""
        return self._as("velocity", x, t)

    def data(self, x: Tensor, t: Tensor) -> Tensor:
        """Posterior mean of the target, :math:`E[x_1 | x_t = x]`."""
        return self._as("data", x, t)

    def noise(self, x: Tensor, t: Tensor) -> Tensor:
        """Posterior mean of the source noise, :math:`E[x_0 | x_t = x]`."""
        return self._as("noise", x, t)

    def score(self, x: Tensor, t: Tensor) -> Tensor:
        r""":math:`\nabla_x \log p_t(x)`."""
        return self._as("score", x, t)

    def sde_drift(self, x: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        r"""Drift :math:`u(x, t) + \epsilon(t) \nabla\log p_t(x)` of the marginal-preserving SDE
        :math:`dx = (u + \epsilon s)\,dt + \sqrt{2\epsilon}\,dW` (one field evaluation)."""
        return sde_drift_from_prediction(self, x, t, eps)

    def for_batch(self, start: int, stop: int, total: int) -> "Field":
        """The field for samples ``start .. stop - 1`` of a batch of ``total``: per-sample conditions
        (a ``condition`` entry whose first dimension is ``total``, e.g. class labels) are sliced, in
        this field and in the fields it combines. Used to sample in chunks; parameters are shared.
        Returns ``self`` when nothing is per-sample."""
        children = {name: m.for_batch(start, stop, total) for name, m in self.named_children() if isinstance(m, Field)}
        changed = {name: f for name, f in children.items() if f is not getattr(self, name)}
        condition = getattr(self, "condition", None)
        sliced = None
        if isinstance(condition, dict):
            per_sample = {k: v for k, v in condition.items() if isinstance(v, Tensor) and v.ndim > 0 and v.shape[0] == total}
            if per_sample and (start, stop) != (0, total):
                sliced = {**condition, **{k: v[start:stop] for k, v in per_sample.items()}}
        if not changed and sliced is None:
            return self
        clone = copy.copy(self)
        object.__setattr__(clone, "_modules", dict(self._modules))  # copy.copy shares the submodule table
        for name, f in changed.items():
            setattr(clone, name, f)
        if sliced is not None:
            clone.condition = sliced
        return clone

    def extra_repr(self) -> str:
        return f"path={self.path!r}, parametrisation={self.parametrisation!r}"


def check_field(field: object, name: str = "field") -> None:
    """Raises a TypeError unless ``field`` is a flowbridge :class:`Field`."""
    if not isinstance(field, Field):
        raise ArgumentError(f"{name} must be a flowbridge Field; got {type(field).__name__}")


def same_path(*fields: Field) -> Path | None:
    """Returns the common path of ``fields``; raises ValueError if they live on different paths."""
    for f in fields:
        check_field(f)
    paths = [f.path for f in fields]
    for p in paths[1:]:
        if p != paths[0]:
            raise ArgumentError(f"fields must share one path to be combined; got {paths}")
    return paths[0]


def call_net(net: nn.Module, x: Tensor, t: Tensor, condition: dict[str, Any]) -> Tensor:
    """Calls ``net(x, t, **condition)`` with t broadcast to the batch (networks expect (B,))."""
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    return net(x, t, **condition)


def sde_drift_from_prediction(field: Field, x: Tensor, t: Tensor, eps: Tensor) -> Tensor:
    r"""The reverse-SDE drift :math:`u + \epsilon\,\nabla\log p_t` from one evaluation of ``field``.

    Both terms are affine in the field's prediction, so one network call serves both.
    """
    path = field.gaussian_path
    out = field.predict(x, t)
    # velocity + eps * score, both affine in (x, out): one affine map, two kernels with float coefficients.
    a_u, b_u = path.conversion(field.parametrisation, "velocity", x, t)
    a_s, b_s = path.conversion(field.parametrisation, "score", x, t)
    return apply_affine(a_u + eps * a_s, b_u + eps * b_s, x, out)
