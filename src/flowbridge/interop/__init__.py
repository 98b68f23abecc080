"""Priors from where users keep them: diffusers denoisers and other libraries' velocity models."""

from flowbridge.interop.diffusers import SUPPORTED_SCHEDULERS, DiffusersField, from_diffusers
from flowbridge.interop.discrete import DiscreteVPSchedule
from flowbridge.interop.latent import LatentField
from flowbridge.interop.pyro import FlowPrior
from flowbridge.interop.velocity import VelocityField, from_velocity

__all__ = ["SUPPORTED_SCHEDULERS", "DiffusersField", "DiscreteVPSchedule", "FlowPrior", "LatentField", "VelocityField", "from_diffusers", "from_velocity"]
