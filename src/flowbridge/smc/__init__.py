r"""Sequential Monte Carlo with Feynman–Kac correctors (Skreta et al. 2025) and reward tilting.

Heuristic guidance — scaling a score (annealing), adding scores (products of experts), mixing a
conditional and an unconditional score (CFG) — samples the wrong distribution. Weighted particles
whose log-weights follow the Feynman–Kac rate derived from the Fokker–Planck equation, plus
resampling, sample the intended one:

>>> target = smc.anneal(mixture.field("vp"), beta=2.0)
>>> out = smc.sample(target, shape=(4096, 2), steps=200, resample=smc.EveryStep(warmup=10))
>>> out.samples, out.ess, out.log_normalizer

Any registered solver with a Gaussian transition moves the particles (``solver="ddpm_ancestral"``,
``"dpmpp_2m_sde"``, an instance, ...; :func:`kernels` lists them); the weights stay the target's.

See ``docs/smc.md`` for the derivations in flowbridge's time convention (t = 0 noise, t = 1 data).
"""

from flowbridge.smc.base import InitialParticles, SMCTarget, WeightCollapseError
from flowbridge.smc.coefficients import StepCoefficients, step_coefficients
from flowbridge.smc.exact import GridDensity, mixture_product, noised_mixture, tilted_mixture
from flowbridge.smc.geometric import GeometricTarget, anneal, guided, product
from flowbridge.smc.particles import Particles
from flowbridge.smc.pcnl import PCNL
from flowbridge.smc.policies import ESSBelow, EveryStep, Never, ResamplePolicy, get_policy
from flowbridge.smc.resampling import RESAMPLERS, get_resampler, multinomial, resample, residual, stratified, systematic
from flowbridge.smc.sampler import SMCResult, kernels, sample
from flowbridge.smc.tilted import TiltedTarget, tilted

__all__ = [
    "ESSBelow",
    "EveryStep",
    "GeometricTarget",
    "GridDensity",
    "InitialParticles",
    "Never",
    "PCNL",
    "Particles",
    "RESAMPLERS",
    "ResamplePolicy",
    "SMCResult",
    "SMCTarget",
    "StepCoefficients",
    "TiltedTarget",
    "WeightCollapseError",
    "anneal",
    "get_policy",
    "get_resampler",
    "guided",
    "kernels",
    "mixture_product",
    "multinomial",
    "noised_mixture",
    "product",
    "resample",
    "residual",
    "sample",
    "step_coefficients",
    "tilted_mixture",
    "stratified",
    "systematic",
    "tilted",
]
