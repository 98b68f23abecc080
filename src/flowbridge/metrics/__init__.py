"""Sample-based metrics: distances between distributions, their noise floor, the ESS, and
Bures–Wasserstein errors for bridges, and a Fréchet distance for 8x8 digits."""

from flowbridge.metrics.bridges import (
    bures_wasserstein2,
    bw2_uvp,
    cbw2_uvp,
    mixture_moments,
    sample_moments,
)
from flowbridge.metrics.digits import (
    digits_features,
    digits_frechet_distance,
    frechet_distance,
)
from flowbridge.metrics.distances import (
    energy_distance,
    mmd,
    sliced_wasserstein,
    wasserstein2,
)
from flowbridge.metrics.ess import effective_sample_size
from flowbridge.metrics.noise_floor import NoiseFloor, noise_floor
from flowbridge.metrics.quality import QualityReport, compare_to_truth

__all__ = [
    "NoiseFloor",
    "QualityReport",
    "bures_wasserstein2",
    "bw2_uvp",
    "cbw2_uvp",
    "compare_to_truth",
    "digits_features",
    "digits_frechet_distance",
    "effective_sample_size",
    "energy_distance",
    "frechet_distance",
    "mixture_moments",
    "mmd",
    "noise_floor",
    "sample_moments",
    "sliced_wasserstein",
    "wasserstein2",
]
