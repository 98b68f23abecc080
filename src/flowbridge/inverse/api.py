"""``flowbridge.inverse.sample``: posterior samples from any prior field in one call."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError, SamplingError
from flowbridge.fields.base import Field
from flowbridge.inverse.measurement import Measurement
from flowbridge.inverse.samplers.base import Context, PosteriorSamples, TimeGrid, get_posterior_sampler
from flowbridge.random import RandomSource, randn


def sample(
    prior_field: Field,
    measurement: Measurement,
    method: str = "dps",
    *,
    num_samples: int = 1,
    steps: int = 100,
    particles: int | None = None,
    generator: RandomSource = None,
    x_init: Tensor | None = None,
    grid: str = "uniform",
    t_start: float | None = None,
    t_end: float | None = None,
    **options: Any,
) -> PosteriorSamples:
    r"""Draws from :math:`p(x \mid y) \propto p(x)\,p(y \mid A(x))` with a diffusion / flow prior.

    Args:
        prior_field: the prior, any :class:`~flowbridge.fields.Field` on a Gaussian path.
        measurement: :class:`~flowbridge.inverse.Measurement` (observation, operator, noise).
        method: ``dps``, ``pigdm``, ``ddrm``, ``dds``, ``daps``, ``enkg``, ``mcgdiff``, ``tds``, ``ensemble``.
        num_samples: number of posterior draws. Particle samplers run ``num_samples`` independent
            groups of ``particles`` particles and return one draw per group (``enkg`` returns its
            ensemble members, ``ceil(num_samples / particles)`` ensembles).
        steps: field evaluations per sample or particle along the path (the NFE budget).
        particles: particles per group (particle samplers only; >= 2).
        generator: the only source of randomness.
        x_init: optional initial noise, shape (num_samples * particles, *input_shape) (or
            (num_samples, ...) without particles); drawn from ``generator`` when omitted.
        grid: name of the time grid on the prior's path (``flowbridge.samplers.grids``).
        t_start: first time of the grid.
        t_end: last time of the grid.
        **options: the sampler's own options (e.g. ``step_size`` for DPS, ``eta`` for DDRM).

    Returns:
        :class:`~flowbridge.inverse.PosteriorSamples` (samples, log-weights and particles where there
        are particles, counters, ESS).

    Raises:
        ValueError / TypeError: for an unknown method, a requirement the operator or noise lacks,
            ``particles < 2`` for a particle sampler, bad ``num_samples`` / ``steps`` / ``x_init``.

    Example:
        >>> out = sample(prior, Measurement(y, MatrixOperator(A), Gaussian(0.1)), "mcgdiff",
        ...              num_samples=1000, steps=100, particles=64, generator=torch.Generator().manual_seed(0))
    """
    if not isinstance(measurement, Measurement):
        raise ArgumentError(f"measurement must be a flowbridge.inverse.Measurement; got {type(measurement).__name__}")
    if not isinstance(prior_field, Field):
        raise ArgumentError(f"prior_field must be a flowbridge Field; got {type(prior_field).__name__}")
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ArgumentError(f"num_samples must be a positive integer; got {num_samples!r}")
    sampler = get_posterior_sampler(method, **options)
    if sampler.uses_particles:
        particles = sampler.default_particles if particles is None else particles
    elif particles not in (None, 1):
        raise ArgumentError(f"posterior sampler {method!r} does not use particles; got particles={particles!r}")
    else:
        particles = 1
    sampler.check(prior_field, measurement, particles)
    path = prior_field.gaussian_path
    time_grid = TimeGrid.build(path, steps, grid=grid, t_start=t_start, t_end=t_end)
    op = measurement.operator
    y = measurement.y
    groups = math.ceil(num_samples / particles) if sampler.returns_all_particles else num_samples
    batch = groups * particles
    if x_init is None:
        x_init = time_grid.sigma[0] * randn((batch, *op.input_shape), generator=generator, dtype=y.dtype, device=y.device)
    elif tuple(x_init.shape) != (batch, *op.input_shape):
        raise ArgumentError(
            f"x_init must have shape {(batch, *op.input_shape)} (groups x particles, then the operator's "
            f"input shape); got {tuple(x_init.shape)}"
        )
    ctx = Context(field=prior_field, measurement=measurement, grid=time_grid, shape=op.input_shape)
    ctx.cache["groups"] = groups
    out = sampler.run(ctx, x_init, generator=generator)
    if out.samples.shape[0] != num_samples:
        out = PosteriorSamples(**{**out.__dict__, "samples": out.samples[:num_samples]})
    if not bool(torch.isfinite(out.samples).all()):  # sync-ok: one check after sampling
        raise SamplingError(f"posterior sampler {method!r} produced non-finite samples")
    return out
