"""``flowbridge.sample``: one entry point for every registered solver."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError
from flowbridge.fields.base import Field
from flowbridge.paths.gaussian import GaussianPath
from flowbridge.paths.interpolant import StochasticInterpolant
from flowbridge.fields.wrappers import AutocastField, CompiledField
from flowbridge.random import NoiseSource, RandomSource, noise_source, randn
from flowbridge.samplers.base import SampleOutput, SamplingError, Solver, get_solver
from flowbridge.samplers.graphs import graphed_solve
from flowbridge.samplers.grids import make_grid


def default_span(field: Field) -> tuple[float, float]:
    """Where sampling starts and stops by default: the path's regular interval."""
    path = field.path
    if isinstance(path, (GaussianPath, StochasticInterpolant)):
        return path.t_min, path.t_max
    return 0.0, 1.0


def initial_state(
    field: Field,
    *,
    shape: Sequence[int] | None,
    x0: Tensor | None,
    t_start: float,
    generator: RandomSource,
    dtype: torch.dtype | None,
    device: torch.device | str | None,
) -> Tensor:
    """The state at ``t_start``: ``x0`` if given (checked against ``shape``), else source noise."""
    if x0 is not None:
        if not isinstance(x0, Tensor) or not x0.is_floating_point():
            raise ArgumentError(f"x0 must be a floating-point tensor; got {type(x0).__name__} {getattr(x0, 'dtype', '')}")
        if shape is not None and tuple(shape) != tuple(x0.shape):
            raise ArgumentError(f"x0 has shape {tuple(x0.shape)} but shape={tuple(shape)} was given; pass one or make them agree")
        return x0
    if shape is None:
        raise ArgumentError("give either shape=(batch, ...) or x0=tensor")
    try:
        shape = tuple(operator.index(s) for s in shape)  # integers only: 2.5 or "2" is a mistake, not a size
    except TypeError:
        raise ArgumentError(f"shape must be a sequence of integers (batch, *dims); got {tuple(shape)!r}") from None
    if len(shape) < 2 or min(shape) < 1:
        raise ArgumentError(f"shape must be (batch, *dims) with positive sizes; got {shape}")
    if isinstance(field.path, StochasticInterpolant):
        raise ArgumentError("a stochastic interpolant transports a source data set: pass x0 (source samples), not shape")
    noise = randn(shape, generator=generator, dtype=dtype or torch.get_default_dtype(), device=device)
    if isinstance(field.path, GaussianPath):
        return field.path.prior_sample(shape, t_start, noise=noise)
    return noise


def _wrap_field(field: Field, autocast: torch.dtype | None, compile: bool | str) -> Field:
    if autocast is not None:
        field = AutocastField(field, autocast)
    if compile:
        field = CompiledField(field) if compile is True else CompiledField(field, mode=compile)
    return field


def sample(
    field: Field,
    solver: str | Solver[Any] = "heun",
    steps: int = 20,
    *,
    shape: Sequence[int] | None = None,
    x0: Tensor | None = None,
    generator: torch.Generator | None = None,
    seeds: Sequence[int] | None = None,
    seed: int | None = None,
    grid: str = "uniform",
    grid_options: dict[str, float] | None = None,
    t_span: tuple[float, float] | None = None,
    batch_size: int | None = None,
    return_trajectory: bool = False,
    progress: bool = False,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    out_device: torch.device | str | None = None,
    autocast: torch.dtype | None = None,
    compile: bool | str = False,
    cuda_graph: bool = False,
    **solver_options: Any,
) -> SampleOutput:
    """Draws samples by integrating ``field`` from the source (t=0 side) to the target (t=1 side).

    Args:
        field: any :class:`~flowbridge.fields.Field` (network, analytic, guided).
        solver: a registered solver name (see ``flowbridge.samplers.SOLVERS``) or a solver instance.
        steps: number of steps on the grid (adaptive solvers use it only for the trajectory).
        shape: (num_samples, *dims) of the samples to draw from the source; or give ``x0``.
        x0: initial states at ``t_span[0]`` (source noise, or source data for interpolants).
        generator: the torch generator all noise is drawn from (reproducible for a fixed
            ``batch_size``).
        seeds: per-sample seeds (EDM-style stacked generators): sample ``i`` is then identical
            whatever the batch, chunk or process it is drawn in.
        seed: shorthand for ``seeds`` derived from one integer (``flowbridge.random.index_seeds``).
        grid: ``uniform``, ``quadratic``, ``logsnr`` or ``karras``; ``grid_options`` e.g. ``{"rho": 7}``.
        t_span: (t_start, t_end), default the path's regular interval.
        batch_size: draw in chunks of this many samples (for more samples than fit in memory);
            results are gathered on ``out_device``.
        return_trajectory: also return the states at every grid time.
        progress: show a progress bar (over steps, or over chunks when chunking).
        dtype: of the drawn noise when ``x0`` is not given; the precision of the solver's arithmetic.
        device: of the drawn noise when ``x0`` is not given.
        out_device: where chunked results are gathered (default: ``device``).
        autocast: evaluate the field under ``torch.autocast`` in this dtype (bf16/fp16) while the
            solver works in ``dtype``.
        compile: compile the field's evaluation with ``torch.compile`` (``True``, or a mode such as
            ``"max-autotune"``).
        cuda_graph: capture the whole step loop (network calls included) as a CUDA graph on the
            first call and replay it on later calls with the same field, solver, grid, shape and
            generator (:mod:`flowbridge.samplers.graphs`); fixed-step solvers on a CUDA device.
        **solver_options: passed to the solver's constructor.

    Returns:
        :class:`~flowbridge.samplers.SampleOutput` with ``x``, ``nfe`` and optionally ``trajectory``.

    Raises:
        ValueError: unknown solver or grid, bad shapes or times, too few steps.
        SamplingError: if any sample is non-finite at the end.
    """
    if not isinstance(field, Field):
        raise ArgumentError(f"field must be a flowbridge Field; got {type(field).__name__}")
    solver_obj = get_solver(solver, **solver_options)
    if shape is None and x0 is None:
        raise ArgumentError("give either shape=(batch, ...) or x0=tensor")
    if x0 is not None and shape is not None and tuple(shape) != tuple(x0.shape):
        raise ArgumentError(f"x0 has shape {tuple(x0.shape)} but shape={tuple(shape)} was given; pass one or make them agree")
    if x0 is not None and (not isinstance(x0, Tensor) or x0.ndim < 1 or x0.shape[0] == 0):
        what = f"shape {tuple(x0.shape)}" if isinstance(x0, Tensor) else type(x0).__name__
        raise ArgumentError(
            f"x0 must be a tensor of shape (batch, ...) with at least one sample; got {what}"
        )
    total = x0.shape[0] if x0 is not None else int(shape[0])  # type: ignore[index]
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ArgumentError(f"batch_size must be a positive integer; got {batch_size!r}")
    source = noise_source(generator, seeds, seed, total)
    if t_span is not None and (not isinstance(t_span, (tuple, list)) or len(t_span) != 2):
        raise ArgumentError(f"t_span must be a pair (t_start, t_end); got {t_span!r}")
    t_start, t_end = t_span if t_span is not None else default_span(field)
    schedule = field.path.schedule if isinstance(field.path, GaussianPath) else None
    times = make_grid(grid, steps, float(t_start), float(t_end), schedule, **(grid_options or {}))
    solver_obj.check(field, steps)
    run_field = _wrap_field(field, autocast, compile)

    chunk = batch_size or total
    starts = range(0, total, chunk)
    if progress and len(starts) > 1:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"sampling ({solver_obj.name})")
    xs: list[Tensor] = []
    trajectories: list[Tensor] = []
    nfe = 0
    for lo in starts:
        hi = min(lo + chunk, total)
        chunk_source = source.split(lo, hi) if (lo, hi) != (0, total) else source
        chunk_shape = None if shape is None else (hi - lo, *tuple(shape)[1:])
        x = initial_state(
            field, shape=chunk_shape, x0=None if x0 is None else x0[lo:hi], t_start=float(times[0]),
            generator=chunk_source, dtype=dtype, device=device,
        )
        if cuda_graph:
            result = graphed_solve(solver_obj, run_field, x, times, generator=chunk_source, return_trajectory=return_trajectory)
        else:
            result = solver_obj.solve(
                run_field, x, times, generator=chunk_source, return_trajectory=return_trajectory,
                progress=progress and chunk == total,
            )
        target = out_device if out_device is not None else result.x.device
        xs.append(result.x.to(target))
        if result.trajectory is not None:
            trajectories.append(result.trajectory.to(target))
        nfe = max(nfe, result.nfe)
    x_out = xs[0] if len(xs) == 1 else torch.cat(xs)
    bad = (~torch.isfinite(x_out)).reshape(x_out.shape[0], -1).any(dim=1)
    n_bad = int(bad.sum())  # sync-ok: one check after the loop, not inside it
    if n_bad:
        raise SamplingError(
            f"solver {solver_obj.name!r} produced non-finite values in {n_bad} of {x_out.shape[0]} samples "
            f"({steps} steps, grid {grid!r}); try more steps or another solver"
        )
    trajectory = None
    if trajectories:
        trajectory = trajectories[0] if len(trajectories) == 1 else torch.cat(trajectories, dim=1)
    return SampleOutput(
        x=x_out, nfe=nfe, trajectory=trajectory, times=times.to(x_out.device) if return_trajectory else None,
    )
