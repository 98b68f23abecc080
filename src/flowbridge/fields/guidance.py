r"""Guidance as field combinators.

Conversions between parametrisations are affine in the prediction with the same ``x``-dependent
offset, so an extrapolation :math:`f_b + w (f_a - f_b)` means the same thing in every
parametrisation; each method combines the two fields' answers to the same question.
"""

from __future__ import annotations

import math
import numbers

from torch import Tensor

from flowbridge.errors import ArgumentError
from flowbridge.fields.base import Field, same_path


class GuidedField(Field):
    r"""The extrapolation :math:`f_{base} + w\,(f_{toward} - f_{base})` of two fields on one path."""

    def __init__(self, toward: Field, base: Field, w: float) -> None:
        super().__init__(same_path(toward, base), toward.parametrisation)
        if isinstance(w, bool) or not isinstance(w, numbers.Real) or not math.isfinite(w):
            raise ArgumentError(f"guidance weight w must be a finite number; got {w!r}")
        self.toward = toward
        self.base = base
        self.w = float(w)

    def _mix(self, a: Tensor, b: Tensor) -> Tensor:
        return b + self.w * (a - b)

    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        return self._mix(self.toward.predict(x, t), self.base._as(self.parametrisation, x, t))

    def velocity(self, x: Tensor, t: Tensor) -> Tensor:
        return self._mix(self.toward.velocity(x, t), self.base.velocity(x, t))

    def data(self, x: Tensor, t: Tensor) -> Tensor:
        return self._mix(self.toward.data(x, t), self.base.data(x, t))

    def noise(self, x: Tensor, t: Tensor) -> Tensor:
        return self._mix(self.toward.noise(x, t), self.base.noise(x, t))

    def score(self, x: Tensor, t: Tensor) -> Tensor:
        return self._mix(self.toward.score(x, t), self.base.score(x, t))


class CFGField(GuidedField):
    r"""Classifier-free guidance: :math:`f_u + w (f_c - f_u)`; ``w = 1`` is the conditional field.

    Args:
        cond: the conditional field.
        uncond: the unconditional field (e.g. the same network with the null label).
        w: guidance weight.
    """

    def __init__(self, cond: Field, uncond: Field, w: float) -> None:
        super().__init__(cond, uncond, w)


class AutoGuidanceField(GuidedField):
    r"""Autoguidance (Karras et al. 2024): :math:`f_{bad} + w (f_{good} - f_{bad})`, guiding a model by
    a weaker version of itself."""

    def __init__(self, good: Field, bad: Field, w: float) -> None:
        super().__init__(good, bad, w)

    def sde_drift(self, x: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        return self._mix(self.toward.sde_drift(x, t, eps), self.base.sde_drift(x, t, eps))
