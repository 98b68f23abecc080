"""Couplings: how the (source, target) pairs of a training batch are drawn."""

from flowbridge.couplings.base import CoupledBatch, Coupling
from flowbridge.couplings.independent import IndependentCoupling
from flowbridge.couplings.optimal_transport import CouplingError, MinibatchOTCoupling
from flowbridge.couplings.paired import PairedCoupling

__all__ = ["CoupledBatch", "Coupling", "CouplingError", "IndependentCoupling", "MinibatchOTCoupling", "PairedCoupling"]
