"""``flowbridge.inverse.sample``: posterior samples from any prior field in one call."""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from flowbridge._progress import Progress
from flowbridge.errors import ArgumentError, CapabilityError, SamplingError
from flowbridge.fields.base import Field
from flowbridge.inverse.measurement import Measurement
from flowbridge.inverse.samplers.base import (
    POSTERIOR_SAMPLERS, Context, Counters, PosteriorSampler, PosteriorSamples, TimeGrid, get_posterior_sampler,
)
from flowbridge.random import RandomSource, grouped_noise_source, randn
from flowbridge.samplers.api import step_observer
from flowbridge.samplers.base import Observer
from flowbridge.samplers.presets import TunedSolver


def sample(
    prior_field: Field,
    measurement: Measurement,
    method: str | PosteriorSampler = "dps",
    steps: int = 100,
    *,
    shape: Sequence[int] | None = None,
    num_samples: int = 1,
    particles: int | None = None,
    x0: Tensor | None = None,
    generator: RandomSource = None,
    seeds: Sequence[int] | None = None,
    seed: int | None = None,
    grid: str | Sequence[float] | Tensor = "uniform",
    grid_options: dict[str, float] | None = None,
    t_span: tuple[float, float] | None = None,
    batch_size: int | None = None,
    progress: bool = False,
    callback: Observer | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    x_init: Tensor | None = None,
    t_start: float | None = None,
    t_end: float | None = None,
    **options: Any,
) -> PosteriorSamples:
    r"""Draws from :math:`p(x \mid y) \propto p(x)\,p(y \mid A(x))` with a diffusion / flow prior.

    The arguments are flowbridge's sampling vocabulary (``docs/architecture.md``), shared with
    :func:`flowbridge.sample`, :func:`flowbridge.smc.sample` and BFN sampling.

    Args:
        prior_field: the prior, any :class:`~flowbridge.fields.Field` on a Gaussian path.
        measurement: :class:`~flowbridge.inverse.Measurement` (observation, operator, noise).
        method: a registered name (``dps``, ``pigdm``, ``ddrm``, ``dds``, ``daps``, ``enkg``,
            ``mcgdiff``, ``tds``, ``ensemble``) or a :class:`PosteriorSampler` instance.
        steps: grid intervals, i.e. field evaluations per sample or particle along the path (the
            last interval ends at the clean node); reported as ``nfe``.
        shape: ``(num_samples, *input_shape)`` (the event must be the operator's input shape); or
            give ``num_samples``.
        num_samples: number of posterior draws (default 1, or ``shape[0]``). Particle samplers run ``num_samples`` independent
            groups of ``particles`` particles and return one draw per group (``enkg`` returns its
            ensemble members, ``ceil(num_samples / particles)`` ensembles).
        particles: particles per group (particle samplers only; >= 2).
        x0: optional initial noise, shape (groups * particles, *input_shape) (or
            (num_samples, ...) without particles); drawn from the noise source when omitted
            (``x_init`` is the older name).
        generator: a ``torch.Generator`` or :class:`~flowbridge.random.NoiseSource`: one stream
            for the batch (reproducible for a fixed ``batch_size``).
        seeds: one seed per sample (per group for particle samplers, whose particles draw from
            streams derived from it: :class:`~flowbridge.random.GroupedNoise`): sample ``i`` is
            then the same whatever the number of samples and ``batch_size``; ``enkg``'s ensemble
            members interact, so its seeds (the first member's per ensemble) reproduce a run of the
            same ``num_samples`` only.
        seed: shorthand for ``seeds`` derived from one integer. At most one of the three.
        grid: name of the time grid on the prior's path (``flowbridge.samplers.grids``);
            ``grid_options`` its options. Or ``steps + 1`` explicit times, e.g. a tuned grid
            (``steps=tuned.steps, grid=tuned.grid`` of a
            :class:`~flowbridge.samplers.presets.TunedSolver`): the field is evaluated at the first
            ``steps`` (as the tuned solver evaluates it) and the last is replaced by the clean node
            ``t = 1`` (:meth:`TimeGrid.build`).
        t_span: ``(t_start, t_end)`` of the grid (``t_start``/``t_end`` are the older names);
            default the path's regular interval.
        batch_size: work in chunks of this many samples (groups are never split).
        progress: show progress (a bar on a terminal, a line per tenth of the steps in a log).
        callback: called after every step with a :class:`~flowbridge.samplers.StepInfo` (``x``:
            the chunk's state, particles included).
        dtype: of the drawn initial noise (default ``y``'s).
        device: of the drawn initial noise (default ``y``'s).
        **options: the sampler's own options (e.g. ``step_size`` for DPS, ``eta`` for DDRM);
            unknown options fail with the sampler's options.

    Returns:
        :class:`~flowbridge.inverse.PosteriorSamples` (``x``/``samples``, ``nfe``; log-weights and
        particles where there are particles, counters, ESS).

    Raises:
        ArgumentError: an unknown method or option, ``particles < 2`` for a particle sampler, bad
            ``shape`` / ``num_samples`` / ``steps`` / ``x0`` / ``batch_size``.
        CapabilityError: a requirement the prior, operator or noise lacks (lists the samplers
            that apply); a :class:`~flowbridge.samplers.presets.TunedSolver` as ``method`` (no
            posterior sampler is built on a multistep solver: pass its times as ``grid``).
        SamplingError: non-finite samples.

    Example:
        >>> out = sample(prior, Measurement(y, MatrixOperator(A), Gaussian(0.1)), "mcgdiff", 100,
        ...              num_samples=1000, particles=64, seed=0)
    """
    if not isinstance(measurement, Measurement):
        raise ArgumentError(f"measurement must be a flowbridge.inverse.Measurement; got {type(measurement).__name__}")
    if not isinstance(prior_field, Field):
        raise ArgumentError(f"prior_field must be a flowbridge Field; got {type(prior_field).__name__}")
    op = measurement.operator
    y = measurement.y
    if shape is not None:
        if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence) or len(shape) < 1:
            raise ArgumentError(f"shape must be (num_samples, *input_shape); got {shape!r}")
        try:
            dims = tuple(operator.index(s) for s in shape)
        except TypeError:
            raise ArgumentError(f"shape must be a sequence of integers; got {tuple(shape)!r}") from None
        if dims[1:] != tuple(op.input_shape):
            raise ArgumentError(f"shape={dims}: the event must be the operator's input shape {tuple(op.input_shape)}")
        if num_samples not in (1, dims[0]):
            raise ArgumentError(f"num_samples={num_samples!r} disagrees with shape={dims}; give one of them")
        num_samples = dims[0]
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ArgumentError(f"num_samples must be a positive integer; got {num_samples!r}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ArgumentError(f"batch_size must be a positive integer; got {batch_size!r}")
    if callback is not None and not callable(callback):
        raise ArgumentError(f"callback must be callable callback(StepInfo); got {type(callback).__name__}")
    if x0 is not None and x_init is not None:
        raise ArgumentError("pass x0 (or its older name x_init), not both")
    x0 = x0 if x0 is not None else x_init
    if t_span is not None:
        if t_start is not None or t_end is not None:
            raise ArgumentError("pass t_span=(t_start, t_end) or t_start/t_end, not both")
        if not isinstance(t_span, (tuple, list)) or len(t_span) != 2:
            raise ArgumentError(f"t_span must be a pair (t_start, t_end); got {t_span!r}")
        t_start, t_end = float(t_span[0]), float(t_span[1])
    if isinstance(method, TunedSolver):
        # The posterior samplers make their own steps (guidance, projections, particles); none is a
        # multistep ODE solver whose history weights a tuned solver's multipliers could replace.
        raise CapabilityError(
            f"a tuned solver ({method.solver!r}) is not a posterior sampler: no posterior sampler is built on a multistep "
            "ODE solver, so its weight_multipliers have no use here; use its times: inverse.sample(prior, measurement, "
            f"'dps', tuned.steps, grid=tuned.grid, ...); methods: {', '.join(sorted(POSTERIOR_SAMPLERS))}"
        )
    sampler = get_posterior_sampler(method, **options)
    name = sampler.name
    if sampler.uses_particles:
        particles = sampler.default_particles if particles is None else particles
    elif particles not in (None, 1):
        raise ArgumentError(f"posterior sampler {name!r} does not use particles; got particles={particles!r}")
    else:
        particles = 1
    sampler.check(prior_field, measurement, particles)
    path = prior_field.gaussian_path
    time_grid = TimeGrid.build(path, steps, grid=grid, t_start=t_start, t_end=t_end, grid_options=grid_options)
    groups = math.ceil(num_samples / particles) if sampler.returns_all_particles else num_samples
    batch = groups * particles
    if x0 is not None and (not isinstance(x0, Tensor) or tuple(x0.shape) != (batch, *op.input_shape)):
        got = tuple(x0.shape) if isinstance(x0, Tensor) else type(x0).__name__
        raise ArgumentError(
            f"x0 (x_init) must have shape {(batch, *op.input_shape)} (groups x particles, then the operator's "
            f"input shape); got {got}"
        )
    if sampler.returns_all_particles and seeds is not None:
        if isinstance(seeds, (str, bytes)) or len(seeds) != num_samples:
            raise ArgumentError(f"seeds must hold one seed per sample ({num_samples}); got {seeds!r}")
        seeds = list(seeds)[::particles]  # one stream per ensemble: its first member's seed
    source = grouped_noise_source(generator, seeds, seed, groups, particles)
    if sampler.returns_all_particles:
        per_chunk = groups if batch_size is None else max(1, math.ceil(batch_size / particles))
    else:
        per_chunk = batch_size or groups
    starts = range(0, groups, per_chunk)
    meter = Progress(len(starts) * time_grid.steps, f"posterior sampling ({name})") if progress else None
    outs: list[PosteriorSamples] = []
    try:
        for lo in starts:
            hi = min(lo + per_chunk, groups)
            part = source if (lo, hi) == (0, groups) else source.split(lo, hi)
            if x0 is None:
                x_chunk = time_grid.sigma[0] * randn(
                    ((hi - lo) * particles, *op.input_shape), generator=part,
                    dtype=dtype or y.dtype, device=device if device is not None else y.device,
                )
            else:
                x_chunk = x0[lo * particles:hi * particles]
            ctx = Context(field=prior_field, measurement=measurement, grid=time_grid, shape=op.input_shape,
                          counters=Counters())
            ctx.cache["groups"] = hi - lo
            outs.append(sampler.run(ctx, x_chunk, generator=part, observer=step_observer(meter, callback), offset=lo))
    finally:
        if meter is not None:
            meter.close()
    out = outs[0] if len(outs) == 1 else _concat(outs)
    if out.x.shape[0] != num_samples:
        out = dataclasses.replace(out, x=out.x[:num_samples])
    if not bool(torch.isfinite(out.x).all()):  # sync-ok: one check after sampling
        raise SamplingError(f"posterior sampler {name!r} produced non-finite samples")
    return out


def _concat(outs: list[PosteriorSamples]) -> PosteriorSamples:
    """The chunks' results as one (tensors concatenated along the groups; counters per sample)."""
    first = outs[0]
    cat = lambda name: None if getattr(first, name) is None else torch.cat([getattr(o, name) for o in outs])  # noqa: E731
    return dataclasses.replace(
        first, x=torch.cat([o.x for o in outs]), log_weights=cat("log_weights"), particles=cat("particles"),
        ess=cat("ess"), min_ess=cat("min_ess"),
    )
