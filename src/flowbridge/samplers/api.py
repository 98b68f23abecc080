"""``flowbridge.sample``: one entry point for every registered solver."""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from flowbridge._progress import Progress
from flowbridge.errors import ArgumentError
from flowbridge.fields.base import Field
from flowbridge.fields.clipping import clipped
from flowbridge.fields.wrappers import AutocastField, CompiledField
from flowbridge.paths.gaussian import GaussianPath
from flowbridge.paths.interpolant import StochasticInterpolant
from flowbridge.random import RandomSource, noise_source, randn
from flowbridge.samplers.base import (
    Observer,
    SampleOutput,
    SamplingError,
    Solver,
    StepInfo,
    get_solver,
)
from flowbridge.samplers.graphs import graphed_solve
from flowbridge.samplers.grids import explicit_grid, make_grid
from flowbridge.samplers.presets import TunedSolver
from flowbridge.samplers.recommend import AUTO, recommend


class _DefaultSteps(int):
    """The default of ``sample``'s ``steps`` (20): an ``int`` that a ``TunedSolver`` can tell from an
    explicit ``steps=20`` by identity, so that only a given value is checked against its own steps
    (``None`` stays a refused value, as everywhere in the vocabulary)."""

    def __repr__(self) -> str:
        return int.__repr__(self)


DEFAULT_STEPS: int = _DefaultSteps(20)


def default_span(field: Field, solver: str | Solver[Any] | None = None) -> tuple[float, float]:
    """Where sampling starts and stops by default: the path's regular interval, moved in where
    ``solver`` (if given) cannot run at an end (see :meth:`Solver.default_span`)."""
    if solver is not None:
        return get_solver(solver).default_span(field)
    path = field.path
    if isinstance(path, (GaussianPath, StochasticInterpolant)):
        return path.t_min, path.t_max
    return 0.0, 1.0


def resolve_grid(field: Field, solver: Solver[Any], grid: str | None) -> str:
    """``grid`` if named, else the solver's ``default_grid`` on a Gaussian path (``uniform`` off one)."""
    if grid is not None:
        return grid
    return solver.default_grid if isinstance(field.path, GaussianPath) else "uniform"


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
    solver: str | Solver[Any] | TunedSolver = AUTO,
    steps: int = DEFAULT_STEPS,
    *,
    shape: Sequence[int] | None = None,
    x0: Tensor | None = None,
    generator: RandomSource = None,
    seeds: Sequence[int] | None = None,
    seed: int | None = None,
    grid: str | Sequence[float] | Tensor | None = None,
    grid_options: dict[str, float] | None = None,
    t_span: tuple[float, float] | None = None,
    batch_size: int | None = None,
    return_trajectory: bool = False,
    progress: bool = False,
    callback: Observer | None = None,
    clip: tuple[float, float] | None = None,
    threshold: float | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    out_device: torch.device | str | None = None,
    autocast: torch.dtype | None = None,
    compile: bool | str = False,
    cuda_graph: bool = False,
    **solver_options: Any,
) -> SampleOutput:
    """Draws samples by integrating ``field`` from the source (t=0 side) to the target (t=1 side).

    The arguments are flowbridge's sampling vocabulary, shared with ``smc.sample``,
    ``inverse.sample`` and ``bfn.sample`` (``docs/architecture.md``).

    Args:
        field: any :class:`~flowbridge.fields.Field` (network, analytic, guided).
        solver: a registered solver name (see ``flowbridge.samplers.SOLVERS``), a solver instance, or
            a :class:`~flowbridge.samplers.presets.TunedSolver` (:func:`flowbridge.samplers.tuning.tune`,
            ``TunedSolver.load(path)``): its solver, steps, grid and options are used, and a
            ``steps`` other than its own, a ``grid``, ``grid_options``, solver options or a
            ``t_span`` other than its grid's ends are refused (``ArgumentError``). Default ``"auto"``:
            the solver the benchmark recommends for this field's path and budget
            (:func:`flowbridge.samplers.recommend.recommend`: a multistep solver at low NFE, RK4 or
            UniPC higher up, Heun off Gaussian paths).
        steps: number of steps on the grid (default 20; a TunedSolver's own); adaptive solvers use
            it only for the trajectory; the evaluations actually made are reported as ``nfe``. With
            ``solver="auto"`` it is the budget of field evaluations (a two-evaluation solver then
            takes ``steps // 2`` steps).
        shape: (num_samples, *event) of the samples to draw from the source; or give ``x0``.
        x0: initial states at ``t_span[0]`` (source noise, or source data for interpolants).
        generator: a ``torch.Generator`` (one stream for the batch: reproducible for a fixed
            ``batch_size``) or a :class:`~flowbridge.random.NoiseSource` (e.g. a ``BrownianPath``).
        seeds: per-sample seeds (:class:`~flowbridge.random.SeedNoise`): sample ``i`` is then
            identical whatever the batch, chunk, process or device it is drawn in.
        seed: shorthand for ``seeds`` derived from one integer (``flowbridge.random.index_seeds``).
        grid: a registered grid (``uniform``, ``quadratic``, ``logsnr``, ``karras``); default the
            solver's ``default_grid`` (the best on ``experiments/bench_grids.py``) on a Gaussian path;
            ``grid_options`` e.g. ``{"rho": 7}``. Or explicit times: ``steps + 1`` strictly increasing
            times in [0, 1] (a tuned grid, :mod:`flowbridge.samplers.tuning`), used as given.
        t_span: (t_start, t_end); default the path's regular interval, moved in by 1e-3 at an end
            where the solver cannot run (:meth:`~flowbridge.samplers.Solver.default_span`).
        batch_size: draw in chunks of this many samples (for more samples than fit in memory);
            per-sample conditions (class labels) are split with the batch; results are gathered on
            ``out_device``.
        return_trajectory: also return the states at every grid time.
        progress: show progress (a bar on a terminal, a line per tenth of the steps in a log).
        callback: called after every step with a :class:`~flowbridge.samplers.StepInfo`
            (step index, time, state, chunk offset), as diffusers' ``callback_on_step_end``.
        clip: clip the data prediction to ``(lo, hi)`` (pixel models); with ``threshold``, the
            bound of dynamic thresholding (default ``(-1, 1)``).
        threshold: dynamic thresholding's percentile (Imagen), e.g. 0.995
            (:class:`~flowbridge.fields.ClippedField`).
        dtype: of the drawn noise when ``x0`` is not given; the precision of the solver's arithmetic.
        device: of the drawn noise when ``x0`` is not given.
        out_device: where chunked results are gathered (default: ``device``).
        autocast: evaluate the field under ``torch.autocast`` in this dtype (bf16/fp16) while the
            solver works in ``dtype``.
        compile: compile the field's evaluation with ``torch.compile`` (``True``, or a mode such as
            ``"max-autotune"``).
        cuda_graph: capture the whole step loop (network calls included) as a CUDA graph on the
            first call and replay it on later calls with the same field, solver, grid, shape and
            noise source (:mod:`flowbridge.samplers.graphs`); fixed-step solvers on a CUDA device.
        **solver_options: passed to the solver's constructor.

    Returns:
        :class:`~flowbridge.samplers.SampleOutput` with ``x``, ``nfe`` and optionally ``trajectory``.

    Raises:
        ArgumentError: unknown solver, grid or option, bad shapes or times, too few steps.
        CapabilityError: the solver cannot run on this field.
        SamplingError: if any sample is non-finite at the end.
    """
    if not isinstance(field, Field):
        raise ArgumentError(f"field must be a flowbridge Field; got {type(field).__name__}")
    if isinstance(solver, TunedSolver):  # one path: a tuned solver is its name, steps, times and options
        if grid_options:
            raise ArgumentError("grid_options do not apply to a tuned solver: its grid is its tuned times; omit them")
        given = None if steps is DEFAULT_STEPS else steps
        solver, steps, grid, solver_options = solver.sampling_arguments(given, grid, t_span, solver_options)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ArgumentError(f"steps must be a positive integer; got {steps!r}")
    if isinstance(solver, str) and solver == AUTO:
        if solver_options:
            raise ArgumentError(f"options {sorted(solver_options)} belong to a named solver; pass solver= with them")
        chosen = recommend(field, steps)
        explicit_times = grid is not None and not isinstance(grid, str)
        solver, solver_options = chosen.solver, chosen.options
        steps = steps if explicit_times else chosen.steps  # explicit times fix the steps themselves
        grid = chosen.grid if grid is None else grid
    solver_obj = get_solver(solver, **solver_options)
    if shape is None and x0 is None:
        raise ArgumentError("give either shape=(num_samples, *event) or x0=tensor")
    if x0 is not None and shape is not None and tuple(shape) != tuple(x0.shape):
        raise ArgumentError(f"x0 has shape {tuple(x0.shape)} but shape={tuple(shape)} was given; pass one or make them agree")
    if x0 is not None and (not isinstance(x0, Tensor) or x0.ndim < 1 or x0.shape[0] == 0):
        what = f"shape {tuple(x0.shape)}" if isinstance(x0, Tensor) else type(x0).__name__
        raise ArgumentError(f"x0 must be a tensor of shape (batch, ...) with at least one sample; got {what}")
    if shape is not None and (not isinstance(shape, (tuple, list, torch.Size)) or len(shape) == 0):
        raise ArgumentError(f"shape must be (num_samples, *event); got {shape!r}")
    total = x0.shape[0] if x0 is not None else operator.index(shape[0])  # type: ignore[index]
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ArgumentError(f"batch_size must be a positive integer; got {batch_size!r}")
    if callback is not None and not callable(callback):
        raise ArgumentError(f"callback must be callable callback(StepInfo); got {type(callback).__name__}")
    if cuda_graph and (callback is not None or progress):
        raise ArgumentError("cuda_graph=True replays the whole loop at once: it cannot call a callback or show per-step progress")
    source = noise_source(generator, seeds, seed, total)
    if t_span is not None and (not isinstance(t_span, (tuple, list)) or len(t_span) != 2):
        raise ArgumentError(f"t_span must be a pair (t_start, t_end); got {t_span!r}")
    if grid is not None and not isinstance(grid, str):
        if grid_options:
            raise ArgumentError(f"grid_options {sorted(grid_options)} apply to a registered grid, not to explicit times")
        times = explicit_grid(grid, steps, t_span)
        grid = "explicit"
    else:
        grid = resolve_grid(field, solver_obj, grid)
        t_start, t_end = t_span if t_span is not None else solver_obj.default_span(field)
        schedule = field.path.schedule if isinstance(field.path, GaussianPath) else None
        times = make_grid(grid, steps, float(t_start), float(t_end), schedule, **(grid_options or {}))
    solver_obj.check(field, steps)
    field = clipped(field, clip, threshold)

    chunk = batch_size or total
    starts = range(0, total, chunk)
    fixed_steps = solver_obj.nfe_per_step > 0
    meter = Progress(len(starts) * (steps if fixed_steps else 1), f"sampling ({solver_obj.name})",
                     unit="step" if fixed_steps else "chunk") if progress else None
    wrapped = {id(field): _wrap_field(field, autocast, compile)}
    xs: list[Tensor] = []
    trajectories: list[Tensor] = []
    nfe = 0
    try:
        for lo in starts:
            hi = min(lo + chunk, total)
            whole = (lo, hi) == (0, total)
            chunk_source = source if whole else source.split(lo, hi)
            chunk_field = field if whole else field.for_batch(lo, hi, total)
            run_field = wrapped.get(id(chunk_field)) or _wrap_field(chunk_field, autocast, compile)
            chunk_shape = None if shape is None else (hi - lo, *tuple(shape)[1:])
            x = initial_state(
                field, shape=chunk_shape, x0=None if x0 is None else x0[lo:hi], t_start=float(times[0]),
                generator=chunk_source, dtype=dtype, device=device,
            )
            if cuda_graph:
                result = graphed_solve(solver_obj, run_field, x, times, generator=chunk_source, return_trajectory=return_trajectory)
            else:
                observer = step_observer(meter if fixed_steps else None, callback, lo)
                kwargs = {"observer": observer} if observer is not None else {}
                result = solver_obj.solve(run_field, x, times, generator=chunk_source, return_trajectory=return_trajectory, **kwargs)
                if meter is not None and not fixed_steps:
                    meter.update()
            target = out_device if out_device is not None else result.x.device
            xs.append(result.x.to(target))
            if result.trajectory is not None:
                trajectories.append(result.trajectory.to(target))
            nfe = max(nfe, result.nfe)
    finally:
        if meter is not None:
            meter.close()
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


def step_observer(meter: Progress | None, callback: Observer | None, offset: int = 0) -> Observer | None:
    """One observer for the progress display and the user's callback (``None`` when neither); a
    non-zero ``offset`` (the chunk's first sample) is written into the :class:`StepInfo` it passes on."""
    if meter is None and callback is None:
        return None

    def observe(info: StepInfo) -> None:
        if meter is not None:
            meter.update()
        if callback is not None:
            callback(dataclasses.replace(info, offset=offset) if offset else info)

    return observe
