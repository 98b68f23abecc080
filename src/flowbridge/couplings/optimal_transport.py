r"""Minibatch optimal-transport couplings (Tong et al. 2023; Pooladian et al. 2023) through POT.

For a batch of sources :math:`x_0^{(j)}` and targets :math:`x_1^{(i)}` with squared Euclidean cost
:math:`C_{ji} = \|x_0^{(j)} - x_1^{(i)}\|^2` (over the flattened samples) and uniform marginals, the
plan :math:`\pi` solves

* ``exact``: :math:`\min_\pi \langle \pi, C\rangle` (network simplex, ``ot.emd``); for equal batch
  sizes the optimum is a permutation, so every source is used exactly once;
* ``sinkhorn``: :math:`\min_\pi \langle \pi, C\rangle - \varepsilon H(\pi)` (``ot.sinkhorn``); with
  ``normalize_cost`` the cost is divided by its maximum first, so ``reg`` is scale-free.

Each target row keeps its place (and its label); its source is drawn from the plan's conditional
:math:`\pi(j \mid i) = \pi_{ji} / \sum_j \pi_{ji}` with the torch generator, which samples the
joint :math:`\pi` exactly (the column sums are uniform). numpy's global RNG is never used, and a
plan that fails (iteration limit, numerical overflow) raises :class:`CouplingError` with advice.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from flowbridge.couplings.base import CoupledBatch, Coupling, check_pair_shapes
from flowbridge.errors import ArgumentError, CouplingError
from flowbridge.random import RandomSource, torch_generator

if TYPE_CHECKING:
    import numpy as np

METHODS = ("exact", "sinkhorn")




def squared_distances(x0: Tensor, x1: Tensor) -> np.ndarray:
    """The (B0, B1) squared Euclidean cost between flattened samples, as float64 numpy."""
    a = x0.detach().reshape(x0.shape[0], -1).to("cpu", torch.float64)
    b = x1.detach().reshape(x1.shape[0], -1).to("cpu", torch.float64)
    # sync-ok: POT solves on the host; one transfer per batch, outside any sampling loop.
    if not (bool(torch.isfinite(a).all()) and bool(torch.isfinite(b).all())):
        raise ArgumentError("x0 and x1 must be finite for an OT coupling; the batch contains NaN or inf")
    return torch.cdist(a, b).pow_(2).numpy()


class MinibatchOTCoupling(Coupling):
    """Pairs each batch by an exact or entropic optimal-transport plan.

    Args:
        method: ``"exact"`` (``ot.emd``) or ``"sinkhorn"`` (``ot.sinkhorn``).
        reg: entropic regularisation :math:`\\varepsilon` for ``sinkhorn`` (relative to the largest
            cost when ``normalize_cost``).
        normalize_cost: divide the cost by its maximum before solving.
        max_iter: iteration limit of the solver.
        tol: Sinkhorn's stopping threshold on the marginal violation.

    Raises:
        ValueError: for an unknown method or a non-positive ``reg``/``max_iter``/``tol``.
    """

    def __init__(
        self,
        method: str = "exact",
        reg: float = 0.05,
        normalize_cost: bool = True,
        max_iter: int = 100_000,
        tol: float = 1e-6,
    ) -> None:
        if method not in METHODS:
            raise ArgumentError(f"unknown OT method {method!r}; known methods: {', '.join(METHODS)}")
        if not 0 < reg < math.inf:
            raise ArgumentError(f"reg must be > 0 and finite; got {reg}")
        if not (isinstance(max_iter, int) and max_iter > 0):
            raise ArgumentError(f"max_iter must be a positive integer; got {max_iter!r}")
        if not tol > 0:
            raise ArgumentError(f"tol must be > 0; got {tol}")
        self.method, self.reg, self.normalize_cost = method, float(reg), bool(normalize_cost)
        self.max_iter, self.tol = max_iter, float(tol)

    def __repr__(self) -> str:
        extra = f", reg={self.reg}" if self.method == "sinkhorn" else ""
        return f"MinibatchOTCoupling(method={self.method!r}{extra})"

    def plan(self, x0: Tensor, x1: Tensor) -> np.ndarray:
        """The (B0, B1) transport plan between uniform weights on the rows of ``x0`` and ``x1``.

        Raises:
            CouplingError: if the solver stops before convergence or overflows.
        """
        check_pair_shapes(x0, x1, same_batch=False)
        cost = squared_distances(x0, x1)
        if self.normalize_cost and cost.max() > 0:
            cost = cost / cost.max()
        import numpy as np
        import ot  # imported where used: `import flowbridge` stays light

        a = np.full(cost.shape[0], 1.0 / cost.shape[0])
        b = np.full(cost.shape[1], 1.0 / cost.shape[1])
        if self.method == "exact":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the result code below is checked instead
                plan, log = ot.emd(a, b, cost, numItermax=self.max_iter, log=True)
            if log["result_code"] != 1:
                raise CouplingError(
                    f"exact OT did not reach the optimum ({log['warning']}) for a batch of "
                    f"{cost.shape[0]}x{cost.shape[1]}; raise max_iter (now {self.max_iter}) or use "
                    "method='sinkhorn'"
                )
        else:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                plan, log = ot.sinkhorn(
                    a, b, cost, self.reg, numItermax=self.max_iter, stopThr=self.tol, log=True, warn=False
                )
            errors = log.get("err", [])
            if not np.isfinite(plan).all() or not (plan.sum(axis=0) > 0).all():
                raise CouplingError(
                    f"Sinkhorn overflowed (reg={self.reg}, normalize_cost={self.normalize_cost}): the kernel "
                    "exp(-C/reg) underflowed to zero; raise reg, keep normalize_cost=True, or use method='exact'"
                )
            if not errors or not errors[-1] <= self.tol:
                last = errors[-1] if errors else float("nan")
                raise CouplingError(
                    f"Sinkhorn did not converge in {self.max_iter} iterations (marginal error {last:.3g} > "
                    f"tol {self.tol}); raise max_iter or reg (now {self.reg}), or loosen tol"
                )
        return plan

    def __call__(self, x0: Tensor, x1: Tensor, *, generator: RandomSource = None) -> CoupledBatch:
        generator = torch_generator(generator, "MinibatchOTCoupling (the pairing of the whole batch)")
        plan = self.plan(x0, x1)
        device = generator.device if generator is not None else torch.device("cpu")
        # Column i of the plan is the joint restricted to target i; normalising it gives pi(j | i).
        conditional = torch.from_numpy(plan.T.copy()).to(device)
        index = torch.multinomial(conditional, 1, generator=generator).squeeze(1).to(x0.device)
        return CoupledBatch(x0=x0.index_select(0, index), x1=x1, source_index=index)
