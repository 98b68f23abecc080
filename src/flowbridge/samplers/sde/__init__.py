"""Stochastic samplers of the marginal-preserving reverse SDE."""

from flowbridge.samplers.sde.euler_maruyama import EulerMaruyama, natural_eps

__all__ = ["EulerMaruyama", "natural_eps"]
