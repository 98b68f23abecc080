r"""The BFN loss as a likelihood bound on held-out data, in nats and bits per dimension.

:math:`-\log p(x) \le L(x) + L^r(x)` where :math:`L` is the n-step loss :math:`L^n` (the negative
ELBO of the n-step generative process) or its limit :math:`L^\infty`, and :math:`L^r` the
reconstruction term at ``t = 1``. Both are Monte-Carlo estimates (over ``t`` and the flow); the
estimate is unbiased, and :attr:`LikelihoodBound.standard_error` says how well the data and draws
pin it down.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from flowbridge.bfn.base import LikelihoodBound, check_n_steps, flat_dims
from flowbridge.errors import ArgumentError
from flowbridge.random import RandomSource, rand


def nll_bound(
    bfn: Any,
    net: nn.Module,
    x: Tensor,
    *,
    n_steps: int | None = None,
    repeats: int = 1,
    batch_size: int = 512,
    generator: RandomSource = None,
) -> LikelihoodBound:
    """Estimates the negative log-likelihood bound of ``net`` on data ``x``.

    Args:
        bfn: a :class:`ContinuousBFN`, :class:`DiscretizedBFN` or :class:`DiscreteBFN`.
        net: the trained network (evaluated as given; wrap the call in ``torch.no_grad()``).
        x: (N, ...) held-out data.
        n_steps: ``None`` for :math:`L^\\infty`, else the ``n`` of :math:`L^n`.
        repeats: Monte-Carlo draws of ``(t, flow)`` per datum, averaged.
        batch_size: data per network call.
        generator: the randomness of ``t`` and the flow.
    """
    if not isinstance(x, Tensor):  # discrete data are integer tensors, so only the type is checked here
        raise ArgumentError(f"x must be a tensor of data (B, ...); got {type(x).__name__}")
    if n_steps is not None:
        check_n_steps(n_steps)
    if not isinstance(repeats, int) or repeats < 1:
        raise ArgumentError(f"repeats must be an integer >= 1; got {repeats!r}")
    dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
    diffusion, reconstruction = [], []
    for start in range(0, x.shape[0], batch_size):
        xb = x[start : start + batch_size]
        d = torch.zeros(xb.shape[0], dtype=dtype, device=x.device)
        r = torch.zeros_like(d)
        for _ in range(repeats):
            t = rand((xb.shape[0],), generator=generator, dtype=dtype, device=x.device)
            if n_steps is None:
                out = bfn.continuous_time_loss(net, xb, t, generator=generator)
            else:
                out = bfn.n_step_loss(net, xb, t, n_steps, generator=generator)
            d = d + out.per_sample.detach()
            r = r + bfn.reconstruction_loss(net, xb, generator=generator).detach()
        diffusion.append(d / repeats)
        reconstruction.append(r / repeats)
    diff, rec = torch.cat(diffusion), torch.cat(reconstruction)
    return LikelihoodBound(
        nats=diff + rec, dims=flat_dims(x.shape), n_steps=n_steps, terms={"diffusion": diff, "reconstruction": rec}
    )
