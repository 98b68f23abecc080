"""An observation bundled with the forward model and noise model that produced it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError
from flowbridge.inverse.noise import NoiseModel
from flowbridge.inverse.operators import Operator


@dataclass(frozen=True)
class Measurement:
    r"""One observation :math:`y = A(x) + \text{noise}`.

    Attributes:
        y: the observation, shape ``operator.output_shape`` (a leading batch dimension of 1 is
            accepted and removed).
        operator: the forward model :math:`A`.
        noise: the noise model.

    Raises:
        ValueError: if ``y``'s shape disagrees with the operator's output shape or ``y`` is not finite.
        TypeError: if ``operator`` or ``noise`` have the wrong type.
    """

    y: Tensor
    operator: Operator
    noise: NoiseModel

    def __post_init__(self) -> None:
        if not isinstance(self.operator, Operator):
            raise ArgumentError(f"operator must be a flowbridge.inverse.Operator; got {type(self.operator).__name__}")
        if not isinstance(self.noise, NoiseModel):
            raise ArgumentError(f"noise must be a flowbridge.inverse noise model (Gaussian, Laplace, Poisson); got {type(self.noise).__name__}")
        if not isinstance(self.y, (Tensor, list, tuple, float, int)):
            raise ArgumentError(f"y must be a tensor of shape {self.operator.output_shape}; got {type(self.y).__name__}")
        y = torch.as_tensor(self.y)
        if y.is_complex():
            raise ArgumentError(f"y must be real; got dtype {y.dtype}")
        if not y.is_floating_point():
            y = y.to(torch.get_default_dtype())
        expected = self.operator.output_shape
        if tuple(y.shape) == (1, *expected):
            y = y[0]
        if tuple(y.shape) != expected:
            raise ArgumentError(
                f"y must have shape {expected} (the output shape of {type(self.operator).__name__}); "
                f"got {tuple(y.shape)}"
            )
        if not bool(torch.isfinite(y).all()):  # sync-ok: validated once, before sampling
            raise ArgumentError("y must be finite; it contains NaN or inf")
        object.__setattr__(self, "y", y)

    def batched(self, like: Tensor) -> Tensor:
        """``y`` with a leading batch dimension of 1, on ``like``'s device and dtype."""
        return self.y.to(like)[None]

    def log_likelihood(self, x: Tensor) -> Tensor:
        r""":math:`\log p(y \mid x)` for a batch of unknowns ``x``, shape (B,)."""
        return self.noise.log_prob(self.batched(x), self.operator.forward(x))
