r"""Observation noise models :math:`y \sim p(y \mid A(x))`, backed by pyro distributions.

Each model gives the pyro distribution of one observation given the clean forward value
(:meth:`NoiseModel.distribution`), its log-likelihood summed over the observation's entries
(:meth:`NoiseModel.log_prob`, differentiable in the mean: DPS and TDS take its gradient) and
:meth:`NoiseModel.sample`, which draws through ``flowbridge.random`` (never pyro's global RNG) so
that a seed reproduces the observation.
"""

from __future__ import annotations

import math

import pyro.distributions as pdist
import torch
from torch import Tensor

from flowbridge.errors import ArgumentError
from flowbridge.random import RandomSource, rand, randn_like, torch_generator


def _positive(value: float, name: str) -> float:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ArgumentError(f"{name} must be a finite positive number; got {value!r}")
    return float(value)


class NoiseModel:
    """Base class. ``gaussian`` is true only for additive Gaussian noise with a known ``sigma``."""

    gaussian: bool = False

    def distribution(self, mean: Tensor) -> pdist.TorchDistribution:
        """The pyro distribution of ``y`` (batch (B,), event = one observation) given ``A(x) = mean``."""
        raise NotImplementedError

    def log_prob(self, y: Tensor, mean: Tensor) -> Tensor:
        r""":math:`\log p(y \mid A(x) = \text{mean})`, shape (B,); ``y`` broadcasts against ``mean``."""
        return self.distribution(mean).log_prob(y.expand_as(mean))

    def sample(self, mean: Tensor, *, generator: RandomSource = None) -> Tensor:
        """A noisy observation of ``mean`` drawn from ``generator``."""
        raise NotImplementedError


class Gaussian(NoiseModel):
    r"""Additive :math:`N(0, \sigma^2 I)` noise.

    Args:
        sigma: the noise standard deviation, > 0.
    """

    gaussian = True

    def __init__(self, sigma: float) -> None:
        self.sigma = _positive(sigma, "sigma")

    def distribution(self, mean: Tensor) -> pdist.TorchDistribution:
        return pdist.Normal(mean, self.sigma).to_event(mean.ndim - 1)

    def log_prob(self, y: Tensor, mean: Tensor) -> Tensor:
        # Closed form: the same as the pyro distribution, without building one per call.
        r = (y - mean).reshape(mean.shape[0], -1)
        n = r.shape[1]
        return -0.5 * (r * r).sum(1) / self.sigma**2 - n * (math.log(self.sigma) + 0.5 * math.log(2 * math.pi))

    def sample(self, mean: Tensor, *, generator: RandomSource = None) -> Tensor:
        return mean + self.sigma * randn_like(mean, generator=generator)

    def __repr__(self) -> str:
        return f"Gaussian(sigma={self.sigma})"


class Laplace(NoiseModel):
    """Additive Laplace noise with scale ``b`` (density ``exp(-|e|/b) / 2b``)."""

    def __init__(self, scale: float) -> None:
        self.scale = _positive(scale, "scale")

    def distribution(self, mean: Tensor) -> pdist.TorchDistribution:
        return pdist.Laplace(mean, self.scale).to_event(mean.ndim - 1)

    def sample(self, mean: Tensor, *, generator: RandomSource = None) -> Tensor:
        u = rand(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device) - 0.5
        # Inverse CDF of the Laplace distribution.
        return mean - self.scale * torch.sign(u) * torch.log1p(-2 * u.abs())

    def __repr__(self) -> str:
        return f"Laplace(scale={self.scale})"


class Poisson(NoiseModel):
    r"""Photon-count noise: :math:`k \sim \text{Poisson}(\text{rate} \cdot \max(A x, 0))`, :math:`y = k / \text{rate}`.

    Args:
        rate: counts per unit intensity (> 0); larger is less noisy.
    """

    def __init__(self, rate: float) -> None:
        self.rate = _positive(rate, "rate")

    def _intensity(self, mean: Tensor) -> Tensor:
        # A tiny floor keeps log-probabilities finite where the mean touches zero.
        return (self.rate * mean).clamp_min(1e-6)

    def distribution(self, mean: Tensor) -> pdist.TorchDistribution:
        return pdist.Poisson(self._intensity(mean)).to_event(mean.ndim - 1)

    def log_prob(self, y: Tensor, mean: Tensor) -> Tensor:
        counts = torch.round(y * self.rate).expand_as(mean)
        return pdist.Poisson(self._intensity(mean), validate_args=False).to_event(mean.ndim - 1).log_prob(counts)

    def sample(self, mean: Tensor, *, generator: RandomSource = None) -> Tensor:
        gen = torch_generator(generator, "Poisson noise")
        return torch.poisson(self._intensity(mean), generator=gen) / self.rate

    def __repr__(self) -> str:
        return f"Poisson(rate={self.rate})"
