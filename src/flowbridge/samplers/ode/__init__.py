"""Deterministic solvers of the probability-flow ODE."""

from flowbridge.samplers.ode.adaptive import Dopri5, TorchdiffeqSolver
from flowbridge.samplers.ode.runge_kutta import RK4, ButcherTableau, Euler, Heun, Midpoint, RungeKutta

__all__ = ["RK4", "ButcherTableau", "Dopri5", "Euler", "Heun", "Midpoint", "RungeKutta", "TorchdiffeqSolver"]
