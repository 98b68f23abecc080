r"""ESS-triggered resampling of ``G`` independent particle groups for the posterior samplers.

The draw itself is :func:`flowbridge.smc.resampling.systematic` (batched over groups); this module
only applies it to the groups whose ESS fell below a threshold, choosing with ``torch.where``
rather than a Python ``if`` so that a step never synchronises with the device.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowbridge.metrics import effective_sample_size
from flowbridge.random import RandomSource
from flowbridge.smc.resampling import systematic


def resample_if_degenerate(
    particles: Tensor, log_weights: Tensor, threshold: float, *, generator: RandomSource = None,
    extra: tuple[Tensor, ...] = (),
) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
    """Resamples the groups with ESS < ``threshold * P``; the others keep their particles and weights.

    Args:
        particles: (G, P, ...).
        log_weights: (G, P).
        threshold: in [0, 1]; 1 resamples every step, 0 never.
        generator: randomness for the systematic draws (drawn for every group, used where needed).
        extra: further (G, P, ...) tensors carried along with the particles (cached predictions).

    Returns:
        The new particles, normalised log-weights (log-sum-exp 0 per group) and the carried tensors.
    """
    g, p = log_weights.shape
    log_weights = log_weights - torch.logsumexp(log_weights, dim=1, keepdim=True)
    ess = effective_sample_size(log_weights, dim=1)
    degenerate = (ess < threshold * p)[:, None]  # (G, 1)
    idx = systematic(log_weights, generator=generator)
    keep = torch.arange(p, device=idx.device).expand(g, p)
    idx = torch.where(degenerate, idx, keep)

    def gather(t: Tensor) -> Tensor:
        flat_idx = idx.reshape(g, p, *([1] * (t.ndim - 2))).expand_as(t)
        return torch.gather(t, 1, flat_idx)

    uniform = torch.full_like(log_weights, -float(torch.log(torch.tensor(float(p)))))
    new_log_w = torch.where(degenerate, uniform, log_weights)
    return gather(particles), new_log_w, tuple(gather(t) for t in extra)
