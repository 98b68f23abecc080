"""Bookkeeping shared by the particle samplers: groups of particles, weights, the final draw.

Particles live flattened as (G * P, *shape) so that the prior field sees one ordinary batch; the
log-weights are (G, P). Groups never interact, so draw ``g`` depends only on group ``g``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowbridge.inverse.samplers.base import Context, PosteriorSamples
from flowbridge.metrics import effective_sample_size
from flowbridge.random import RandomSource, rand


def gaussian_log_density(x: Tensor, mean: Tensor, var: Tensor | float) -> Tensor:
    """Elementwise log N(x; mean, var)."""
    if isinstance(var, (int, float)):  # a step's variance is a Python float: no tensor (on CUDA, a blocking copy)
        return -0.5 * ((x - mean) ** 2 / var + math.log(2 * math.pi * var))
    return -0.5 * ((x - mean) ** 2 / var + torch.log(2 * math.pi * var))


def twist_variance(noise_sigma: float, sigma_bar: float, inflation: float, data_variance: float) -> float:
    r"""Observation variance of a Tweedie twist, :math:`\sigma_y^2 + \rho\,r^2` (a Python float).

    :math:`r^2 = v\bar\sigma^2/(v + \bar\sigma^2)` is :math:`\mathrm{Var}[x_1 \mid x_t]` per coordinate
    for a prior :math:`N(0, vI)` at noise level :math:`\bar\sigma = \sigma/\alpha`; ``data_variance``
    :math:`v = \infty` gives the flat-prior value :math:`\bar\sigma^2` (MCGdiff's potentials). With
    :math:`v` below the data's real spread the twist is over-confident at high noise, where
    :math:`\hat x_1` is still a blur of many modes, and the weights collapse in the first steps.
    """
    sb2 = sigma_bar * sigma_bar
    r2 = sb2 if math.isinf(data_variance) else data_variance * sb2 / (data_variance + sb2)
    return noise_sigma * noise_sigma + inflation * r2


def per_particle(values: Tensor, groups: int) -> Tensor:
    """Sums (G * P, ...) elementwise values over everything but the particle: (G, P)."""
    return values.reshape(groups, -1, *values.shape[1:]).reshape(groups, values.shape[0] // groups, -1).sum(-1)


def draw_one_per_group(particles: Tensor, log_weights: Tensor, *, generator: RandomSource) -> Tensor:
    """One particle from each group's weighted cloud (inverse CDF), (G, *shape)."""
    g, p = log_weights.shape
    cdf = torch.cumsum(torch.softmax(log_weights, dim=1), dim=1)
    u = rand((g, 1), generator=generator, dtype=cdf.dtype, device=cdf.device) * cdf[:, -1:]
    idx = torch.searchsorted(cdf, u).clamp_(max=p - 1)[:, 0]
    grouped = particles.reshape(g, p, *particles.shape[1:])
    return grouped[torch.arange(g, device=idx.device), idx]


def particle_result(
    ctx: Context, name: str, x: Tensor, log_weights: Tensor, min_ess: Tensor, *, generator: RandomSource
) -> PosteriorSamples:
    """The common ``finish`` of the particle samplers."""
    g, p = log_weights.shape
    log_weights = log_weights - torch.logsumexp(log_weights, dim=1, keepdim=True)
    x = x.detach()
    return PosteriorSamples(
        x=draw_one_per_group(x, log_weights, generator=generator),
        nfe=ctx.counters.nfe,
        method=name,
        counters=ctx.counters,
        log_weights=log_weights,
        particles=x.reshape(g, p, *x.shape[1:]),
        ess=effective_sample_size(log_weights, dim=1),
        min_ess=min_ess,
    )


def regroup(t: Tensor, groups: int) -> Tensor:
    """(G * P, ...) -> (G, P, ...)."""
    return t.reshape(groups, t.shape[0] // groups, *t.shape[1:])


def flatten_groups(t: Tensor) -> Tensor:
    """(G, P, ...) -> (G * P, ...)."""
    return t.reshape(t.shape[0] * t.shape[1], *t.shape[2:])
