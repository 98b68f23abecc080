"""The solver protocol, the solver registry and the result types.

A solver's state is explicit: :meth:`Solver.init` returns it, :meth:`Solver.step` threads it, and
nothing is stored on ``self`` — one solver object serves any number of batches and threads.
Capabilities are class attributes, checked by :meth:`Solver.check` before any work is done.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Generic, TypeVar

import torch
from torch import Tensor

from flowbridge._utils import register_in, registry_error
from flowbridge.fields.base import Field
from flowbridge.paths.gaussian import GaussianPath
from flowbridge.random import RandomSource

State = TypeVar("State")


class SamplingError(RuntimeError):
    """Sampling produced non-finite values (names the solver and how many samples went bad)."""


@dataclass(frozen=True)
class SampleOutput:
    """What :func:`flowbridge.sample` returns.

    Attributes:
        x: the samples at the final time.
        nfe: number of field evaluations used (per sample; adaptive solvers report their total).
        trajectory: (T, B, ...) states at the grid times if requested, else ``None``.
        times: the (T,) grid times if a trajectory was requested, else ``None``.
    """

    x: Tensor
    nfe: int
    trajectory: Tensor | None = None
    times: Tensor | None = None


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

    def check(self, field: Field, steps: int) -> None:
        """Raises a clear error if this solver cannot run on ``field`` with ``steps`` steps."""
        if steps < self.min_steps:
            raise ValueError(f"solver {self.name!r} needs steps >= {self.min_steps}; got steps={steps}")
        if self.needs_gaussian_path and not isinstance(field.path, GaussianPath):
            applicable = sorted(n for n, cls in SOLVERS.items() if not cls.needs_gaussian_path)
            raise ValueError(
                f"solver {self.name!r} needs a field on a GaussianPath; this field's path is {field.path!r}. "
                f"Solvers that apply: {', '.join(applicable)}"
            )

    @abstractmethod
    def init(self, field: Field, x: Tensor, grid: Tensor, *, generator: RandomSource = None) -> State:
        """Precomputes coefficients on ``grid`` (float64, CPU) and returns the initial state."""

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
        progress: bool = False,
    ) -> SolveResult:
        """Runs the whole step loop. The loop has no host syncs: ``i`` is a Python int and every
        coefficient was precomputed by :meth:`init`."""
        self.check(field, len(grid) - 1)
        state = self.init(field, x, grid, generator=generator)
        steps = range(len(grid) - 1)
        if progress:
            from tqdm.auto import tqdm

            steps = tqdm(steps, desc=self.name, leave=False)
        trajectory = [x] if return_trajectory else None
        for i in steps:
            x, state = self.step(field, x, state, i, generator=generator)
            if trajectory is not None:
                trajectory.append(x)
        return SolveResult(
            x=x,
            nfe=self.nfe_per_step * (len(grid) - 1),
            trajectory=torch.stack(trajectory) if trajectory is not None else None,
        )


SOLVERS: dict[str, type[Solver[Any]]] = {}


def register_solver(name: str) -> Callable[[type[Solver[Any]]], type[Solver[Any]]]:
    """Class decorator adding a solver to :data:`SOLVERS` under ``name``."""

    def wrap(cls: type[Solver[Any]]) -> type[Solver[Any]]:
        register_in(SOLVERS, "solver", name, cls)
        cls.name = name
        return cls

    return wrap


def get_solver(name: str | Solver[Any], **options: Any) -> Solver[Any]:
    """Builds a registered solver by name; unknown names and options fail with the known ones."""
    if isinstance(name, Solver):
        if options:
            raise ValueError(f"options {sorted(options)} given with a solver instance; set them on the instance")
        return name
    if name not in SOLVERS:
        raise registry_error("solver", name, list(SOLVERS))
    cls = SOLVERS[name]
    init = cls.__init__
    params = {} if init is object.__init__ else dict(inspect.signature(init).parameters)
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [k for k in options if k not in params or k == "self"]
    if unknown and not accepts_any:
        known = [k for k in params if k != "self"]
        raise ValueError(f"solver {name!r} has no option(s) {unknown}; its options: {known or 'none'}")
    return cls(**options)
