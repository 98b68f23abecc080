r"""Clipping the data prediction of pixel models: static clipping and dynamic thresholding.

A model of images in :math:`[-1, 1]` can predict :math:`\hat x_1` outside that range at high noise,
which large guidance weights amplify into saturated samples. :class:`ClippedField` clips the data
prediction and answers every other question from the clipped one, so any solver sees a consistent
field:

* static: :math:`\hat x_1 \leftarrow \mathrm{clamp}(\hat x_1, lo, hi)`;
* dynamic (Saharia et al. 2022, "Imagen"): per sample :math:`s = \max(q_p(|\hat x_1|), b)` with
  :math:`q_p` the ``percentile`` quantile over the sample's entries and :math:`b` the bound, then
  :math:`\hat x_1 \leftarrow \mathrm{clamp}(\hat x_1, -s, s)\,b/s`.

Both run on the device without host synchronisation (the quantile is a batched kernel).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError
from flowbridge.fields.base import Field, check_field


class ClippedField(Field):
    """``inner`` with its data prediction clipped (static) or dynamically thresholded.

    Args:
        inner: a field on a Gaussian path.
        clip: ``(lo, hi)``: the static range; for dynamic thresholding the bound is ``hi`` (the
            range must then be symmetric).
        percentile: dynamic thresholding's quantile in (0, 1], e.g. 0.995; ``None`` for static.
    """

    def __init__(self, inner: Field, clip: tuple[float, float] = (-1.0, 1.0), percentile: float | None = None) -> None:
        check_field(inner, "inner")
        inner.gaussian_path  # noqa: B018 - refuses a field without a Gaussian path with a clear error
        super().__init__(inner.path, "data")
        try:
            lo, hi = (float(v) for v in clip)
        except (TypeError, ValueError):
            raise ArgumentError(f"clip must be a pair (lo, hi) of numbers; got {clip!r}") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ArgumentError(f"clip must be finite with lo < hi; got {clip!r}")
        if percentile is not None:
            if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) or not 0 < percentile <= 1:
                raise ArgumentError(f"percentile must be a number in (0, 1]; got {percentile!r}")
            if lo != -hi:
                raise ArgumentError(f"dynamic thresholding needs a symmetric clip range (-b, b); got {clip!r}")
        self.inner, self.lo, self.hi = inner, lo, hi
        self.percentile = None if percentile is None else float(percentile)

    def _clip(self, x1_hat: Tensor) -> Tensor:
        if self.percentile is None:
            return x1_hat.clamp(self.lo, self.hi)
        flat = x1_hat.abs().reshape(x1_hat.shape[0], -1)
        scale = torch.quantile(flat.float(), self.percentile, dim=1).to(x1_hat.dtype).clamp_min(self.hi)
        scale = scale.reshape(-1, *([1] * (x1_hat.ndim - 1)))
        return torch.maximum(torch.minimum(x1_hat, scale), -scale) * (self.hi / scale)

    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        return self._clip(self.inner.data(x, t))

    def data(self, x: Tensor, t: Tensor) -> Tensor:
        return self.predict(x, t)

    def extra_repr(self) -> str:
        return f"clip=({self.lo}, {self.hi}), percentile={self.percentile}"


def clipped(field: Field, clip: tuple[float, float] | None, percentile: float | None) -> Field:
    """``field`` wrapped in :class:`ClippedField` when ``clip`` or ``percentile`` is given."""
    if clip is None and percentile is None:
        return field
    bound = (-1.0, 1.0) if clip is None else clip
    return ClippedField(field, bound, percentile)


__all__ = ["ClippedField", "clipped"]
