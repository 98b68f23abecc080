"""The paired coupling: the data set itself says which source goes with which target."""

from __future__ import annotations

from torch import Tensor

from flowbridge.couplings.base import CoupledBatch, Coupling, check_pair_shapes
from flowbridge.random import RandomSource


class PairedCoupling(Coupling):
    """Keeps the pairs given by the data (e.g. a noisy image and its clean version).

    Unlike :class:`~flowbridge.couplings.IndependentCoupling` it insists that a source batch was
    supplied by the data (``x0`` of the same batch size), so a recipe that asks for paired data but
    is fed noise fails loudly; :class:`~flowbridge.training.GenerativeModule` checks this before
    training.
    """

    requires_source_data = True

    def __call__(self, x0: Tensor, x1: Tensor, *, generator: RandomSource = None) -> CoupledBatch:
        check_pair_shapes(x0, x1, same_batch=True)
        return CoupledBatch(x0=x0, x1=x1)
