r"""Inverse problems: forward operators, noise models and posterior samplers with diffusion priors.

>>> from flowbridge.inverse import Gaussian, Inpainting, Measurement, sample
>>> out = sample(prior_field, Measurement(y, Inpainting(mask), Gaussian(0.05)), "ddrm", num_samples=16, steps=50)
"""

from flowbridge.inverse.api import sample
from flowbridge.inverse.latent import LatentPosteriorSamples, compose_with_decoder, sample_latent
from flowbridge.inverse.linear import Blur, Downsample, Inpainting, MatrixOperator
from flowbridge.inverse.measurement import Measurement
from flowbridge.inverse.noise import Gaussian, Laplace, NoiseModel, Poisson
from flowbridge.inverse.operators import (
    AdjointnessReport, Lambda, LinearOperator, Operator, SpectralDecomposition, adjointness_test, conjugate_gradient,
)
from flowbridge.inverse.samplers import (
    POSTERIOR_SAMPLERS, Counters, PosteriorSampler, PosteriorSamples, get_posterior_sampler, register_posterior_sampler,
)

__all__ = [
    "LatentPosteriorSamples",
    "compose_with_decoder",
    "sample_latent",
    "POSTERIOR_SAMPLERS", "AdjointnessReport", "Blur", "Counters", "Downsample", "Gaussian", "Inpainting", "Lambda",
    "Laplace", "LinearOperator", "MatrixOperator", "Measurement", "NoiseModel", "Operator", "Poisson",
    "PosteriorSampler", "PosteriorSamples", "SpectralDecomposition", "adjointness_test", "conjugate_gradient",
    "get_posterior_sampler", "register_posterior_sampler", "sample",
]
