r"""ESS-triggered resampling of ``G`` independent particle groups for the posterior samplers.

The bookkeeping is SMC's (:func:`flowbridge.smc.resampling.resample_groups`, the step
:func:`flowbridge.smc.sample` takes with one group): systematic draws batched over groups, kept with
``torch.where`` in the groups whose ESS fell below a threshold, so that a step never synchronises
with the device. This module adds the posterior samplers' convention: log-weights normalised per
group.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowbridge.metrics import effective_sample_size
from flowbridge.random import RandomSource
from flowbridge.smc.resampling import resample_groups, take_particles


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
    p = log_weights.shape[1]
    log_weights = log_weights - torch.logsumexp(log_weights, dim=1, keepdim=True)
    ess = effective_sample_size(log_weights, dim=1)
    step = resample_groups(log_weights, ess < threshold * p, generator=generator)
    # Normalised: a resampled group's equal weights are 1/P each (the others are normalised already).
    new_log_w = torch.where(step.resampled[:, None], step.log_weights - math.log(p), step.log_weights)  # type: ignore[index]
    return (
        take_particles(particles, step.ancestors), new_log_w,
        tuple(take_particles(t, step.ancestors) for t in extra),
    )
