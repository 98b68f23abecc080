"""Ground truth: exact fields, densities and flow maps to test every sampler and objective against."""

from flowbridge.analytic.mixture import GaussianMixture, GaussianMixtureField, gaussian_flow_map

__all__ = ["GaussianMixture", "GaussianMixtureField", "gaussian_flow_map"]
