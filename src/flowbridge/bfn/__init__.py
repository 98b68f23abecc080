"""Bayesian flow networks (Graves et al. 2023) for continuous, discretized and discrete data.

The flows are Gaussian paths (:mod:`flowbridge.bfn.schedules`), so besides the original n-step
samplers every flowbridge Gaussian-path solver samples a BFN (BFN-Solver, Xue et al. 2024).
"""

from flowbridge.bfn.base import BFNSample, LikelihoodBound, sample_categorical, step_index
from flowbridge.bfn.continuous import BFNField, ContinuousBFN
from flowbridge.bfn.discrete import DiscreteBFN
from flowbridge.bfn.discretized import DiscretizedBFN
from flowbridge.bfn.likelihood import nll_bound
from flowbridge.bfn.objective import BFNLoss, ContinuousBFNObjective
from flowbridge.bfn.optimal import IndependentCategoricalPosterior, MixturePosteriorMean
from flowbridge.bfn.module import BFNModule, BFNSamplerConfig
from flowbridge.bfn.schedules import ContinuousBFNSchedule, DiscreteBFNSchedule

__all__ = [
    "BFNField",
    "BFNLoss",
    "BFNModule",
    "BFNSamplerConfig",
    "BFNSample",
    "ContinuousBFN",
    "ContinuousBFNObjective",
    "ContinuousBFNSchedule",
    "DiscreteBFN",
    "DiscreteBFNSchedule",
    "DiscretizedBFN",
    "IndependentCategoricalPosterior",
    "LikelihoodBound",
    "MixturePosteriorMean",
    "nll_bound",
    "sample_categorical",
    "step_index",
]
