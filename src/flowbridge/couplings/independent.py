"""The independent coupling: source and target drawn independently, as in plain flow matching."""

from __future__ import annotations

from torch import Tensor

from flowbridge.couplings.base import CoupledBatch, Coupling, check_pair_shapes
from flowbridge.random import RandomSource


class IndependentCoupling(Coupling):
    r"""The product coupling :math:`\pi(x_0, x_1) = p_0(x_0)\,p_1(x_1)`.

    The rows of ``x0`` are already independent of ``x1`` when ``x0`` is fresh noise or comes from an
    independently shuffled source data set, so the pairing is the identity and nothing is drawn.
    """

    def __call__(self, x0: Tensor, x1: Tensor, *, generator: RandomSource = None) -> CoupledBatch:
        check_pair_shapes(x0, x1, same_batch=True)
        return CoupledBatch(x0=x0, x1=x1)
