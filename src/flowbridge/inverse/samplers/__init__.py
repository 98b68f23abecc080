"""Posterior samplers, one per file, registered in :data:`POSTERIOR_SAMPLERS`."""

from flowbridge.inverse.samplers.base import (
    POSTERIOR_SAMPLERS, Context, Counters, PosteriorSampler, PosteriorSamples, TimeGrid, get_posterior_sampler,
    register_posterior_sampler,
)
from flowbridge.inverse.samplers import daps, ddrm, dds, dps, enkg, ensemble, mcgdiff, pigdm, tds  # noqa: F401  (registration)

__all__ = [
    "POSTERIOR_SAMPLERS", "Context", "Counters", "PosteriorSampler", "PosteriorSamples", "TimeGrid",
    "get_posterior_sampler", "register_posterior_sampler",
]
