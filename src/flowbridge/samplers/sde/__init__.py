"""Stochastic samplers of the marginal-preserving reverse SDE (Gaussian paths and interpolants)."""

from flowbridge.samplers.sde.adaptive import AdaptiveSDE, AdaptiveSDEResult
from flowbridge.samplers.sde.common import BrownianPath, check_score_field, field_gives_score, natural_eps
from flowbridge.samplers.sde.ddpm import DDPMAncestral
from flowbridge.samplers.sde.dpmpp import DPMSolverPP2MSDE
from flowbridge.samplers.sde.edm import EDMStochastic
from flowbridge.samplers.sde.euler_maruyama import EulerMaruyama
from flowbridge.samplers.sde.langevin import LangevinCorrector, PredictorCorrector
from flowbridge.samplers.sde.torchsde_backend import TorchsdeEuler, TorchsdeReversibleHeun, TorchsdeSRK

__all__ = [
    "AdaptiveSDE",
    "AdaptiveSDEResult",
    "BrownianPath",
    "DDPMAncestral",
    "DPMSolverPP2MSDE",
    "EDMStochastic",
    "EulerMaruyama",
    "LangevinCorrector",
    "PredictorCorrector",
    "TorchsdeEuler",
    "TorchsdeReversibleHeun",
    "TorchsdeSRK",
    "check_score_field",
    "field_gives_score",
    "natural_eps",
]
