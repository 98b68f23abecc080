"""Ground truth: exact fields, densities, flow maps, posteriors and bridges to test every sampler
and objective against."""

from flowbridge.analytic.bridges import EOTBenchmarkPair, GaussianBridge, GaussianBridgeField
from flowbridge.analytic.interpolant import GaussianMixtureInterpolantField
from flowbridge.analytic.mixture import GaussianMixture, GaussianMixtureField, gaussian_flow_map
from flowbridge.analytic.posterior import GaussianPosterior, GMMInverseProblem, gaussian_posterior, mixture_posterior

__all__ = [
    "EOTBenchmarkPair",
    "GMMInverseProblem",
    "GaussianBridge",
    "GaussianBridgeField",
    "GaussianMixture",
    "GaussianMixtureField",
    "GaussianMixtureInterpolantField",
    "GaussianPosterior",
    "gaussian_flow_map",
    "gaussian_posterior",
    "mixture_posterior",
]
