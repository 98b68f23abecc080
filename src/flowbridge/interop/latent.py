r"""Latent priors: a field over latents ``z`` with a decoder ``D`` (and encoder ``E``) to data space.

Posterior sampling with a measurement in data space, :math:`y = A(D(z)) + \text{noise}`, runs the
inverse-problem samplers in latent space on the composed operator :math:`A \circ D` and decodes the
result ("decode-then-guide"). The inverse module's requirement checks apply to the composition:
when both :math:`A` and :math:`D` are matrices the composition is the matrix :math:`AD` (with its
SVD, so DDRM / MCGdiff / ΠGDM apply); a nonlinear decoder leaves gradient-based and
derivative-free samplers.
"""

from __future__ import annotations

from typing import Callable

from torch import Tensor

from flowbridge.errors import ArgumentError
from flowbridge.fields.base import Field

Coder = Callable[[Tensor], Tensor]


class LatentField(Field):
    """A latent-space prior ``field`` plus its ``encoder`` and ``decoder``.

    It is itself the latent field (every method is the inner field's), so solvers, SMC and posterior
    samplers run on it unchanged; :meth:`decode` maps their output to data space.

    Args:
        field: the prior over latents (any field on a Gaussian path).
        encoder: ``z = encoder(x)`` (may be ``None`` when only decoding is needed).
        decoder: ``x = decoder(z)``: a callable, an ``nn.Module`` or a flowbridge inverse ``Operator``
            (e.g. a :class:`~flowbridge.inverse.MatrixOperator` for a linear decoder).
    """

    def __init__(self, field: Field, encoder: Coder | None, decoder: Coder) -> None:
        super().__init__(field.path, field.parametrisation)
        self.field = field
        self.encoder = encoder
        self.decoder = decoder

    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        return self.field.predict(x, t)

    def velocity(self, x: Tensor, t: Tensor) -> Tensor:
        return self.field.velocity(x, t)

    def data(self, x: Tensor, t: Tensor) -> Tensor:
        return self.field.data(x, t)

    def noise(self, x: Tensor, t: Tensor) -> Tensor:
        return self.field.noise(x, t)

    def score(self, x: Tensor, t: Tensor) -> Tensor:
        return self.field.score(x, t)

    def sde_drift(self, x: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        return self.field.sde_drift(x, t, eps)

    def decode(self, z: Tensor) -> Tensor:
        """Latents to data space."""
        from flowbridge.inverse.operators import Operator

        return self.decoder.forward(z) if isinstance(self.decoder, Operator) else self.decoder(z)

    def encode(self, x: Tensor) -> Tensor:
        """Data to latents; raises if no encoder was given."""
        if self.encoder is None:
            raise ArgumentError("this LatentField has no encoder")
        return self.encoder(x)
