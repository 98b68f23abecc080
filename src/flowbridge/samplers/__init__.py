"""Samplers: the solver protocol and registry, time grids, ODE and SDE solvers, and ``sample``."""

from flowbridge.samplers import multistep, ode, sde  # noqa: F401  (registers the solvers)
from flowbridge.samplers.api import sample
from flowbridge.samplers.base import (
    SOLVERS,
    GaussianTransition,
    SampleOutput,
    SamplingError,
    SamplingResult,
    Solver,
    SolveResult,
    StepInfo,
    get_solver,
    register_solver,
)
from flowbridge.samplers.grids import GRIDS, make_grid, register_grid

__all__ = [
    "GRIDS",
    "GaussianTransition",
    "SamplingResult",
    "StepInfo",
    "SOLVERS",
    "SampleOutput",
    "SamplingError",
    "SolveResult",
    "Solver",
    "get_solver",
    "make_grid",
    "register_grid",
    "register_solver",
    "sample",
]
