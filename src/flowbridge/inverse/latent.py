r"""Posterior sampling on latent priors: run in latent space on :math:`A \circ D`, then decode."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from flowbridge.errors import ArgumentError
from flowbridge.inverse.linear import MatrixOperator
from flowbridge.inverse.measurement import Measurement
from flowbridge.inverse.operators import Lambda, Operator


@dataclass(frozen=True)
class LatentPosteriorSamples:
    """Decoded posterior samples and the latent-space result they came from.

    Attributes:
        samples: decoded samples in data space.
        latents: the latent posterior samples.
        latent_result: the inverse sampler's full output in latent space (weights, counters, ESS).
    """

    samples: Tensor
    latents: Tensor
    latent_result: Any


def compose_with_decoder(operator: Operator, decoder: Any, latent_shape: tuple[int, ...]) -> Operator:
    """The operator :math:`z \\mapsto A(D(z))`.

    Two matrices compose into the matrix :math:`AD` (keeping SVD-based samplers available); any other
    pair is a :class:`Lambda`, differentiable when both parts are.
    """
    if isinstance(operator, MatrixOperator) and isinstance(decoder, MatrixOperator):
        if decoder.output_shape != operator.input_shape:
            raise ArgumentError(
                f"the decoder outputs {decoder.output_shape} but the measurement operator takes {operator.input_shape}"
            )
        return MatrixOperator(operator.matrix.to(decoder.matrix) @ decoder.matrix)
    decode = decoder.forward if isinstance(decoder, Operator) else decoder
    differentiable = getattr(operator, "differentiable", True) and getattr(decoder, "differentiable", True)
    return Lambda(lambda z: operator.forward(decode(z)), input_shape=latent_shape, differentiable=differentiable)


def sample_latent(latent_field: Any, measurement: Measurement, method: str = "dps", *, latent_shape: tuple[int, ...], **kwargs: Any) -> LatentPosteriorSamples:
    """Posterior samples of ``x = D(z)`` given ``measurement`` of ``x``, sampling ``z`` under the latent prior.

    Args:
        latent_field: a :class:`~flowbridge.interop.LatentField`.
        measurement: the data-space measurement ``y = A(x) + noise``.
        method: any posterior sampler of :func:`flowbridge.inverse.sample` whose requirements the
            composed operator meets (checked there, with the usual clear refusal).
        latent_shape: the shape of one latent.
        **kwargs: passed to :func:`flowbridge.inverse.sample` (num_samples, steps, particles, generator, ...).
    """
    from flowbridge.inverse.api import sample

    composed = compose_with_decoder(measurement.operator, latent_field.decoder, tuple(latent_shape))
    latent_measurement = Measurement(measurement.y, composed, measurement.noise)
    result = sample(latent_field.field, latent_measurement, method, **kwargs)
    return LatentPosteriorSamples(samples=latent_field.decode(result.samples), latents=result.samples, latent_result=result)
