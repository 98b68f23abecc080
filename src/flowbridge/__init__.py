"""flowbridge: diffusion, flow matching, stochastic interpolants and Schrödinger bridges with
pluggable samplers and posterior samplers for inverse problems.

Time runs from ``t = 0`` (source / noise) to ``t = 1`` (target / data) everywhere.
"""

from flowbridge import smc
from flowbridge.analytic import GaussianMixture
from flowbridge.fields import AutoGuidanceField, CFGField, Field, NetworkField
from flowbridge.likelihood import LikelihoodResult, log_likelihood
from flowbridge.paths import (
    BrownianBridge,
    GaussianPath,
    StochasticInterpolant,
    get_schedule,
)
from flowbridge.random import NoiseSource, SeedNoise, StackedGenerators
from flowbridge.samplers import SOLVERS, SampleOutput, SamplingError, SamplingResult, get_solver, sample

__version__ = "0.1.0"


def load(ckpt, map_location="cpu", *, weights="ema", **arguments):  # type: ignore[no-untyped-def]
    """Loads any model ``flowbridge fit`` trained from its checkpoint; ``model.generate(num)`` samples it.

    Flow matching, interpolants, DDPM/EDM, BFN, LightSB, SB-CFM and DSBM checkpoints alike, read with
    ``weights_only=True``. See :func:`flowbridge.training.checkpoints.load` for the arguments
    (``weights="raw"`` for the optimizer's weights instead of the EMA).
    """
    from flowbridge.training.checkpoints import load as load_checkpoint  # Lightning is imported only here

    return load_checkpoint(ckpt, map_location, weights=weights, **arguments)

__all__ = [
    "SOLVERS",
    "AutoGuidanceField",
    "BrownianBridge",
    "CFGField",
    "Field",
    "LikelihoodResult",
    "GaussianMixture",
    "GaussianPath",
    "NetworkField",
    "SampleOutput",
    "SamplingError",
    "SamplingResult",
    "NoiseSource",
    "SeedNoise",
    "StackedGenerators",
    "StochasticInterpolant",
    "__version__",
    "get_schedule",
    "get_solver",
    "load",
    "log_likelihood",
    "sample",
    "smc",
]
