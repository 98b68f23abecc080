"""Sample-based metrics: distances between distributions, their noise floor and the ESS."""

from flowbridge.metrics.distances import energy_distance, mmd, sliced_wasserstein, wasserstein2
from flowbridge.metrics.ess import effective_sample_size
from flowbridge.metrics.noise_floor import NoiseFloor, noise_floor
from flowbridge.metrics.quality import QualityReport, compare_to_truth

__all__ = [
    "QualityReport",
    "compare_to_truth",
    "NoiseFloor",
    "effective_sample_size",
    "energy_distance",
    "mmd",
    "noise_floor",
    "sliced_wasserstein",
    "wasserstein2",
]
