"""The solver protocol, the solver registry and the result types.

A solver's state is explicit: :meth:`Solver.init` returns it, :meth:`Solver.step` threads it, and
nothing is stored on ``self`` — one solver object serves any number of batches and threads.
Capabilities are class attributes, checked by :meth:`Solver.check` before any work is done.
"""

from __future__ import annotations

import functools
import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Generic, TypeVar

import torch
from torch import Tensor

from flowbridge._utils import TimePoint, register_in, registry_error
from flowbridge.errors import ArgumentError, CapabilityError, SamplingError
from flowbridge.fields.base import Field
from flowbridge.paths.gaussian import (
    GaussianPath,
    conversion_coefficients,
    schedule_rows,
    time_points,
)
from flowbridge.paths.interpolant import StochasticInterpolant
from flowbridge.random import RandomSource

State = TypeVar("State")


@dataclass(frozen=True)
class SamplingResult:
    """The base of every sampling entry point's result (``flowbridge.sample``, ``smc.sample``,
    ``inverse.sample``, ``bfn.sample``).

    Attributes:
        x: the samples, (num_samples, *event).
        nfe: field (network) evaluations per sample, as counted by the algorithm.
    """

    x: Tensor
    nfe: int


@dataclass(frozen=True)
class SampleOutput(SamplingResult):
    """What :func:`flowbridge.sample` returns.

    Attributes:
        x: the samples at the final time.
        nfe: number of field evaluations used (per sample; adaptive solvers report their total).
        trajectory: (T, B, ...) states at the grid times if requested, else ``None``.
        times: the (T,) grid times if a trajectory was requested, else ``None``.
    """

    trajectory: Tensor | None = None
    times: Tensor | None = None


@dataclass(frozen=True)
class StepInfo:
    """What a step callback (``callback=`` of the sampling entry points) sees after each step.

    Attributes:
        step: index of the step just taken (0-based).
        steps: steps in the run.
        t: the time reached.
        x: the state after the step (the chunk's samples when sampling in chunks).
        offset: index of the chunk's first sample in the whole batch.
    """

    step: int
    steps: int
    t: float
    x: Tensor
    offset: int = 0


Observer = Callable[[StepInfo], None]


@dataclass(frozen=True)
class GaussianTransition:
    r"""One step of a solver whose transition is Gaussian: :math:`x' = \text{mean} + \text{std}\,\xi`
    with :math:`\xi \sim N(0, I)`.

    This is the kernel protocol that SMC and the particle posterior samplers drive: they draw
    :math:`\xi` themselves (from their noise source, or a twisted proposal) and weigh the move with
    the transition density :math:`N(x'; \text{mean}, \text{std}^2 I)`.

    Attributes:
        mean: (B, ...) the transition's mean.
        std: its standard deviation, the same for every sample (a Python float).
        state: the solver's state after the step.
    """

    mean: Tensor
    std: float
    state: Any


@dataclass(frozen=True)
class SolveResult:
    """A solver's raw result: final state, NFE and optional trajectory."""

    x: Tensor
    nfe: int
    trajectory: Tensor | None = None


class Solver(ABC, Generic[State]):
    """Base class of all samplers that integrate a field from ``grid[0]`` to ``grid[-1]``.

    Class attributes declare capabilities:
        name: registry name.
        order: convergence order (strong order for SDE solvers, on smooth problems).
        stochastic: whether the solver draws noise at each step.
        needs_gaussian_path: whether the field must live on a :class:`GaussianPath`.
        min_steps: the fewest steps the solver accepts.
        nfe_per_step: field evaluations per step (0 for adaptive solvers, which count their own).
    """

    name: ClassVar[str] = "solver"
    order: ClassVar[float] = 1.0
    stochastic: ClassVar[bool] = False
    needs_gaussian_path: ClassVar[bool] = False
    min_steps: ClassVar[int] = 1
    nfe_per_step: ClassVar[int] = 1
    #: the grid used when none is named (on a Gaussian path; chosen by experiments/bench_grids.py)
    default_grid: ClassVar[str] = "uniform"

    def validate_span(self, field: Field, t_start: float, t_end: float) -> None:
        """Raises an :class:`~flowbridge.errors.ArgumentError` if this solver cannot run on
        ``[t_start, t_end]`` (checked by preparing a short run on the ``meta`` device: the same
        up-front checks as a real run, without any arithmetic)."""
        steps = max(self.min_steps, 2)
        grid = torch.linspace(t_start, t_end, steps + 1, dtype=torch.float64)
        self.init(field, torch.empty((1, 1), device="meta"), grid)

    def default_span(self, field: Field) -> tuple[float, float]:
        """Where sampling starts and stops when no ``t_span`` is given: the path's regular interval,
        each end moved in by 1e-3 where this solver cannot run (e.g. an SDE whose diffusion level is
        infinite at ``t = 0`` of the linear path, or a velocity asked of a data prediction at
        ``t = 1``)."""
        path = field.path
        if not isinstance(path, (GaussianPath, StochasticInterpolant)):
            return 0.0, 1.0
        t0, t1 = path.t_min, path.t_max
        for candidate in ((t0, t1), (t0 + 1e-3, t1), (t0, t1 - 1e-3), (t0 + 1e-3, t1 - 1e-3)):
            try:
                self.validate_span(field, *candidate)
            except ArgumentError:
                continue
            return candidate
        return t0, t1  # nothing helps: the run itself raises the specific error

    def check(self, field: Field, steps: int) -> None:
        """Raises a clear error if this solver cannot run on ``field`` with ``steps`` steps."""
        if steps < self.min_steps:
            raise ArgumentError(f"solver {self.name!r} needs steps >= {self.min_steps}; got steps={steps}")
        if self.needs_gaussian_path and not isinstance(field.path, GaussianPath):
            applicable = sorted(n for n, cls in SOLVERS.items() if not cls.needs_gaussian_path)
            raise CapabilityError(
                f"solver {self.name!r} needs a field on a GaussianPath; this field's path is {field.path!r}. "
                f"Solvers that apply: {', '.join(applicable)}"
            )

    @abstractmethod
    def init(self, field: Field, x: Tensor, grid: Tensor, *, generator: RandomSource = None) -> State:
        """Precomputes coefficients on ``grid`` (float64, CPU) and returns the initial state."""

    #: the step is a Gaussian transition (:meth:`transition`), usable as an SMC kernel
    gaussian_transition: ClassVar[bool] = False

    def transition(self, field: Field, x: Tensor, state: State, i: int) -> GaussianTransition:
        """The Gaussian transition of step ``i`` (solvers with ``gaussian_transition``); its single
        field evaluation is at ``(x, grid[i])``."""
        raise CapabilityError(
            f"solver {self.name!r} has no Gaussian transition; SMC kernels: "
            f"{', '.join(sorted(n for n, c in SOLVERS.items() if c.gaussian_transition))}"
        )

    @abstractmethod
    def step(
        self, field: Field, x: Tensor, state: State, i: int, *, generator: RandomSource = None
    ) -> tuple[Tensor, State]:
        """Advances ``x`` from ``grid[i]`` to ``grid[i + 1]``."""

    def solve(
        self,
        field: Field,
        x: Tensor,
        grid: Tensor,
        *,
        generator: RandomSource = None,
        return_trajectory: bool = False,
        observer: Observer | None = None,
    ) -> SolveResult:
        """Runs the whole step loop. The loop has no host syncs: ``i`` is a Python int and every
        coefficient was precomputed by :meth:`init`; ``observer`` (progress, a user callback) is
        called with a :class:`StepInfo` after each step."""
        self.check(field, len(grid) - 1)
        state = self.init(field, x, grid, generator=generator)
        steps = len(grid) - 1
        times = grid.tolist() if observer is not None else None  # sync-ok: the CPU grid
        trajectory = [x] if return_trajectory else None
        for i in range(steps):
            x, state = self.step(field, x, state, i, generator=generator)
            if trajectory is not None:
                trajectory.append(x)
            if observer is not None:
                observer(StepInfo(step=i, steps=steps, t=times[i + 1], x=x))
        return SolveResult(
            x=x,
            nfe=self.nfe_per_step * (len(grid) - 1),
            trajectory=torch.stack(trajectory) if trajectory is not None else None,
        )


def _converting_leaves(field: Field, target: str) -> list[Field]:
    """The innermost fields of ``field`` (wrappers and guided combinations delegate to them) that
    answer ``target`` by converting their prediction rather than by a method of their own."""
    leaves = [m for m in field.modules() if isinstance(m, Field) and not any(isinstance(c, Field) for c in m.children())]
    return [
        f for f in leaves
        if f.parametrisation != target and getattr(type(f), target) is getattr(Field, target)
    ]


def _conversions(field: Field, evaluates: Sequence[str]) -> list[tuple[Field, str]]:
    targets = [t for e in evaluates for t in (("velocity", "score") if e == "sde_drift" else (e,))]
    return [(leaf, target) for target in targets for leaf in _converting_leaves(field, target)]


def _refuse_non_finite(
    solver: str, conversions: list[tuple[Field, str]], times: Sequence[float], rows: Sequence[tuple[float, ...]]
) -> None:
    for leaf, target in conversions:
        for at, row in zip(times, rows):
            if all(math.isfinite(c) for c in conversion_coefficients(leaf.parametrisation, target, *row)):
                continue
            lo, hi = times[0], times[-1]
            span = (lo + 1e-3, hi) if at == lo else (lo, hi - 1e-3) if at == hi else None
            fix = f"sample on a span that avoids it, e.g. t_span=({span[0]:g}, {span[1]:g})" if span else "use another grid"
            raise ArgumentError(
                f"solver {solver!r} needs the field's {target} at t={at:g}, where a {leaf.parametrisation} "
                f"prediction on {leaf.path!r} does not determine it (alpha={row[0]:g}, sigma={row[1]:g}); {fix}"
            )


def check_evaluable(
    solver: str, field: Field, times: Sequence[float] | Tensor, *, evaluates: Sequence[str]
) -> None:
    """Checks up front that ``field`` can answer what the solver asks at each of ``times``.

    A network trained in one parametrisation answers another through the path's conversion, which
    is not finite where the path degenerates (e.g. a data prediction cannot give the velocity or
    the score where :math:`\\sigma = 0`). Without this check such a run would go through every step
    and end all-NaN.

    Args:
        solver: the solver's name (for the message).
        field: the field the solver evaluates.
        times: the times at which it evaluates the field.
        evaluates: what it asks: ``"velocity"``, ``"data"``, ``"noise"``, ``"score"`` or
            ``"sde_drift"`` (velocity and score).

    Raises:
        ValueError: naming the time, the conversion and a span that avoids it.
    """
    conversions = _conversions(field, evaluates)
    if not conversions:
        return
    t64 = torch.as_tensor(times, dtype=torch.float64).detach().to("cpu").reshape(-1)
    rows = schedule_rows(field.path, t64)
    if rows is not None:
        _refuse_non_finite(solver, conversions, t64.tolist(), rows)  # sync-ok: CPU, before the loop


def prepare_times(
    solver: str, field: Field, times: Sequence[float] | Tensor, like: Tensor, *, evaluates: Sequence[str] = ()
) -> tuple[TimePoint, ...]:
    """:class:`~flowbridge._utils.TimePoint` s for a step loop over ``like``'s batch, device and
    dtype, with the conversions the solver will make precomputed, after checking them as
    :func:`check_evaluable` does (same arguments)."""
    conversions = _conversions(field, evaluates)
    pairs = sorted({(leaf.parametrisation, target) for leaf, target in conversions})
    points = time_points(field.path, times, like, conversions=pairs)
    if points and points[0].schedule is not None:
        _refuse_non_finite(solver, conversions, [p.value for p in points], [p.schedule for p in points])  # type: ignore[misc]
    return points


def combine(x: Tensor, scale: float | Tensor, weights: Sequence[float | Tensor], values: Sequence[Tensor]) -> Tensor:
    r""":math:`\text{scale}\cdot x + \sum_j w_j v_j` with Python-float coefficients: one allocation,
    then in-place ``add_`` (one kernel per term; no multiply when ``scale`` is 1).

    Coefficients given as tensors (0-d, carrying gradients: the solver tuning of
    :mod:`flowbridge.samplers.tuning` differentiates through them) are combined out of place, so
    that autograd sees every term."""
    if isinstance(scale, Tensor) or any(isinstance(w, Tensor) for w in weights):
        total = x * scale
        for w, v in zip(weights, values):
            total = total + w * v
        return total
    terms = [(w, v) for w, v in zip(weights, values) if w != 0.0]
    if scale == 1.0 and terms:
        (w, v), terms = terms[0], terms[1:]
        out = torch.add(x, v, alpha=w)
    else:
        out = x * scale
    for w, v in terms:
        out.add_(v, alpha=w)
    return out


SOLVERS: dict[str, type[Solver[Any]]] = {}


def register_solver(name: str) -> Callable[[type[Solver[Any]]], type[Solver[Any]]]:
    """Class decorator adding a solver to :data:`SOLVERS` under ``name``."""

    def wrap(cls: type[Solver[Any]]) -> type[Solver[Any]]:
        register_in(SOLVERS, "solver", name, cls)
        cls.name = name
        return cls

    return wrap


@functools.lru_cache(maxsize=None)
def _init_parameters(cls: type) -> dict[str, inspect.Parameter]:
    # Inspecting a signature costs ~50 us; solvers are built on every call of sample().
    init = cls.__init__
    return {} if init is object.__init__ else dict(inspect.signature(init).parameters)


def get_solver(name: str | Solver[Any], **options: Any) -> Solver[Any]:
    """Builds a registered solver by name; unknown names and options fail with the known ones."""
    if isinstance(name, Solver):
        if options:
            raise ArgumentError(f"options {sorted(options)} given with a solver instance; set them on the instance")
        return name
    if name not in SOLVERS:
        raise registry_error("solver", name, list(SOLVERS))
    cls = SOLVERS[name]
    params = _init_parameters(cls)
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [k for k in options if k not in params or k == "self"]
    if unknown and not accepts_any:
        known = [k for k in params if k != "self"]
        raise ArgumentError(f"solver {name!r} has no option(s) {unknown}; its options: {known or 'none'}")
    return cls(**options)
