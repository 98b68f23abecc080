r"""Effective sample size of importance weights."""

from __future__ import annotations

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError

__all__ = ["effective_sample_size"]


def effective_sample_size(log_weights: Tensor, dim: int = -1) -> Tensor:
    r"""Kish's effective sample size from unnormalised log-weights.

    .. math::

        \mathrm{ESS} = \frac{(\sum_i w_i)^2}{\sum_i w_i^2}
            = \exp\big(2\,\mathrm{LSE}(\ell) - \mathrm{LSE}(2\ell)\big), \qquad \ell_i = \log w_i,

    which lies in :math:`[1, N]`: :math:`N` for equal weights, 1 when one weight dominates. Working
    with log-sum-exp keeps it exact for log-weights far outside float range, and it is invariant to
    adding a constant to :math:`\ell`. Weights of :math:`-\infty` count as zero; if all are
    :math:`-\infty` the result is NaN.

    Args:
        log_weights: (..., N, ...) floating tensor of log-weights.
        dim: the dimension holding the :math:`N` weights; every other dimension is a batch dimension.

    Returns:
        The ESS with ``dim`` reduced, on ``log_weights``'s device and dtype.

    Raises:
        ValueError: if ``log_weights`` is not floating or ``dim`` is empty.
    """
    if not isinstance(log_weights, Tensor) or not log_weights.is_floating_point():
        got = log_weights.dtype if isinstance(log_weights, Tensor) else type(log_weights).__name__
        raise ArgumentError(f"log_weights must be a floating tensor; got {got}")
    if log_weights.ndim == 0 or log_weights.shape[dim] == 0:
        raise ArgumentError(
            f"log_weights must have a non-empty dimension {dim}; got shape {tuple(log_weights.shape)}"
        )
    return torch.exp(2 * torch.logsumexp(log_weights, dim=dim) - torch.logsumexp(2 * log_weights, dim=dim))
