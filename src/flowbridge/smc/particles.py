r"""Weighted particles: the state an SMC sampler carries.

A particle system is :math:`\{(x^i, \ell^i)\}_{i=1}^N` with unnormalised log-weights
:math:`\ell^i = \log w^i`; it represents the measure :math:`\sum_i w^i \delta_{x^i}`, and the
self-normalised estimate of :math:`E_q[f]` is :math:`\sum_i W^i f(x^i)` with
:math:`W^i = w^i / \sum_j w^j`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError
from flowbridge.metrics.ess import effective_sample_size


@dataclass(frozen=True)
class Particles:
    """``N`` weighted particles.

    Attributes:
        x: (N, ...) particle positions.
        log_weights: (N,) unnormalised log-weights (``-inf`` is a zero weight).
    """

    x: Tensor
    log_weights: Tensor

    def __post_init__(self) -> None:
        if not isinstance(self.x, Tensor) or not self.x.is_floating_point() or self.x.ndim < 2:
            raise ArgumentError(f"Particles.x must be a floating tensor of shape (N, ...); got {getattr(self.x, 'shape', type(self.x).__name__)}")
        if not isinstance(self.log_weights, Tensor) or self.log_weights.shape != self.x.shape[:1]:
            raise ArgumentError(
                f"Particles.log_weights must have shape ({self.x.shape[0]},) to match x; "
                f"got {tuple(getattr(self.log_weights, 'shape', ()))}"
            )
        # Metadata only (no host sync): softmax/logsumexp have no integer or complex kernels.
        if not self.log_weights.is_floating_point():
            raise ArgumentError(f"Particles.log_weights must be a real floating-point tensor; got dtype {self.log_weights.dtype}")
        if self.x.shape[0] < 2:
            raise ArgumentError(f"a particle system needs at least 2 particles; got {self.x.shape[0]}")

    @classmethod
    def uniform(cls, x: Tensor) -> "Particles":
        """Equally weighted particles at ``x``."""
        return cls(x, torch.zeros(x.shape[0], dtype=x.dtype, device=x.device))

    @property
    def n(self) -> int:
        return self.x.shape[0]

    def normalized_weights(self) -> Tensor:
        """:math:`W^i = w^i/\\sum_j w^j` (NaN where every weight is zero)."""
        return torch.softmax(self.log_weights, dim=0)

    def ess(self) -> Tensor:
        """Kish's effective sample size in ``[1, N]`` (a 0-dim tensor, no host sync)."""
        return effective_sample_size(self.log_weights)

    def log_mean_weight(self) -> Tensor:
        r""":math:`\log \frac1N\sum_i w^i`, the particles' estimate of the log normalising constant."""
        return torch.logsumexp(self.log_weights, dim=0) - math.log(self.n)

    def take(self, ancestors: Tensor) -> "Particles":
        """The particles ``ancestors`` (N,) selects, equally weighted (the result of resampling)."""
        return Particles.uniform(self.x.index_select(0, ancestors))
