r"""A log-domain Sinkhorn minibatch coupling for small entropic regularisation.

SB-CFM's plan uses the SB's own regularisation :math:`2\sigma^2 = 2\varepsilon` on the *unnormalised*
cost :math:`|x_0 - x_1|^2`; for small :math:`\varepsilon` the kernel :math:`e^{-C/\text{reg}}` of the
ordinary Sinkhorn iteration underflows (``MinibatchOTCoupling`` then raises). Iterating on the dual
potentials in the log domain (POT's ``method="sinkhorn_log"``) never forms the kernel, so it works for
any ``reg`` at a few times the cost per iteration.
"""

from __future__ import annotations

import warnings

import numpy as np
import ot
from torch import Tensor

from flowbridge.couplings.base import check_pair_shapes
from flowbridge.couplings.optimal_transport import CouplingError, MinibatchOTCoupling, squared_distances

__all__ = ["LogSinkhornCoupling"]


class LogSinkhornCoupling(MinibatchOTCoupling):
    """:class:`~flowbridge.couplings.MinibatchOTCoupling` with a log-domain Sinkhorn plan.

    Args:
        reg: entropic regularisation for the cost :math:`|x_0 - x_1|^2` (or the normalised cost).
        normalize_cost, max_iter, tol: as for :class:`~flowbridge.couplings.MinibatchOTCoupling`.
    """

    def __init__(self, reg: float, normalize_cost: bool = False, max_iter: int = 50_000, tol: float = 1e-4) -> None:
        super().__init__(method="sinkhorn", reg=reg, normalize_cost=normalize_cost, max_iter=max_iter, tol=tol)

    def __repr__(self) -> str:
        return f"LogSinkhornCoupling(reg={self.reg})"

    def plan(self, x0: Tensor, x1: Tensor) -> np.ndarray:
        check_pair_shapes(x0, x1, same_batch=False)
        cost = squared_distances(x0, x1)
        if self.normalize_cost and cost.max() > 0:
            cost = cost / cost.max()
        a = np.full(cost.shape[0], 1.0 / cost.shape[0])
        b = np.full(cost.shape[1], 1.0 / cost.shape[1])
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")  # convergence is checked below and raised, never printed
            plan, log = ot.sinkhorn(
                a, b, cost, self.reg, method="sinkhorn_log", numItermax=self.max_iter, stopThr=self.tol, log=True,
                warn=False,
            )
        errors = log.get("err", [])
        if not np.isfinite(plan).all() or not (plan.sum(axis=0) > 0).all():
            raise CouplingError(f"log-domain Sinkhorn produced an invalid plan (reg={self.reg}); raise reg")
        if not errors or not errors[-1] <= self.tol:
            last = errors[-1] if errors else float("nan")
            raise CouplingError(
                f"log-domain Sinkhorn did not converge in {self.max_iter} iterations (marginal error {last:.3g} > "
                f"tol {self.tol}); raise max_iter or reg (now {self.reg}), or loosen tol"
            )
        return plan
