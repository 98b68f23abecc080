r"""Resampling schemes: draw ancestor indices from normalised weights.

All four map log-weights of shape (..., N) to ancestor indices (..., N) such that particle ``i`` is
chosen :math:`N W^i` times in expectation (unbiased), using ``flowbridge.random`` draws only:

* ``multinomial``: :math:`N` independent uniforms through the inverse CDF;
* ``stratified``: one uniform per stratum, :math:`u_j = (j + U_j)/N`;
* ``systematic``: one shared uniform, :math:`u_j = (j + U)/N` (lowest variance in practice);
* ``residual``: :math:`\lfloor N W^i\rfloor` deterministic copies, the remaining
  :math:`R = N - \sum_i\lfloor N W^i\rfloor` slots drawn multinomially from the residual weights
  :math:`N W^i - \lfloor N W^i\rfloor`.

Everything is batched over leading dimensions and free of host syncs: the data-dependent number of
deterministic copies in ``residual`` is handled with a mask, not with a Python branch.

:func:`resample_groups` is the one weight-bookkeeping step of every particle method in flowbridge
(:func:`flowbridge.smc.sample` with one group, the particle posterior samplers ``tds``, ``mcgdiff``
and ``ensemble`` with ``G`` independent groups): resample the groups a policy chose, reset their
weights and fold their mean weight into the normaliser; :func:`take_particles` moves any per-particle
tensor with the ancestors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError
from flowbridge._utils import registry_error
from flowbridge.random import RandomSource, rand

Resampler = Callable[..., Tensor]
RESAMPLERS: dict[str, Resampler] = {}


def register_resampler(name: str) -> Callable[[Resampler], Resampler]:
    """Adds a resampler ``fn(log_weights, *, generator) -> ancestors`` to :data:`RESAMPLERS`."""

    def wrap(fn: Resampler) -> Resampler:
        RESAMPLERS[name] = fn
        return fn

    return wrap


def _inverse_cdf(weights: Tensor, u: Tensor) -> Tensor:
    """Indices ``i`` with ``cdf[i-1] <= u < cdf[i]`` for sorted-or-not ``u`` in [0, 1), per batch row."""
    cdf = torch.cumsum(weights, dim=-1)
    # Rounding leaves cdf[-1] slightly off 1; scaling u keeps every index in range.
    idx = torch.searchsorted(cdf, (u * cdf[..., -1:]).contiguous(), right=True)
    return idx.clamp_(max=weights.shape[-1] - 1)


def _check(log_weights: Tensor) -> None:
    if not isinstance(log_weights, Tensor) or not log_weights.is_floating_point() or log_weights.ndim < 1:
        raise ArgumentError("log_weights must be a floating tensor of shape (..., N)")
    if log_weights.shape[-1] < 1:
        raise ArgumentError("log_weights must hold at least one particle")


def _uniforms(shape: tuple[int, ...], like: Tensor, generator: RandomSource) -> Tensor:
    return rand(shape, generator=generator, dtype=like.dtype, device=like.device)


@register_resampler("multinomial")
def multinomial(log_weights: Tensor, *, generator: RandomSource = None) -> Tensor:
    """``N`` i.i.d. draws from the categorical distribution of the normalised weights."""
    _check(log_weights)
    w = torch.softmax(log_weights, dim=-1)
    u = _uniforms(tuple(w.shape), w, generator)
    # Sorting the uniforms keeps ancestors in order (cache-friendly gathers) without changing the law.
    return _inverse_cdf(w, torch.sort(u, dim=-1).values)


@register_resampler("stratified")
def stratified(log_weights: Tensor, *, generator: RandomSource = None) -> Tensor:
    """One uniform in each stratum ``[j/N, (j+1)/N)``."""
    _check(log_weights)
    w = torch.softmax(log_weights, dim=-1)
    n = w.shape[-1]
    j = torch.arange(n, dtype=w.dtype, device=w.device)
    return _inverse_cdf(w, (j + _uniforms(tuple(w.shape), w, generator)) / n)


@register_resampler("systematic")
def systematic(log_weights: Tensor, *, generator: RandomSource = None) -> Tensor:
    """A single uniform shifted over the ``N`` strata, ``u_j = (j + U)/N``."""
    _check(log_weights)
    w = torch.softmax(log_weights, dim=-1)
    n = w.shape[-1]
    j = torch.arange(n, dtype=w.dtype, device=w.device)
    return _inverse_cdf(w, (j + _uniforms(tuple(w.shape[:-1]) + (1,), w, generator)) / n)


@register_resampler("residual")
def residual(log_weights: Tensor, *, generator: RandomSource = None) -> Tensor:
    """Deterministic copies of ``floor(N W)`` then multinomial draws from the residual weights."""
    _check(log_weights)
    w = torch.softmax(log_weights, dim=-1)
    n = w.shape[-1]
    scaled = w * n
    copies = torch.floor(scaled)
    # Slot j < R belongs to the particle whose cumulative copy count first exceeds j.
    ends = torch.cumsum(copies, dim=-1)
    slots = torch.arange(n, dtype=w.dtype, device=w.device).expand_as(w).contiguous()
    deterministic = torch.searchsorted(ends, slots, right=True).clamp_(max=n - 1)
    rest = scaled - copies
    # If every slot is deterministic the residuals are all zero; the clamp avoids 0/0 in slots that
    # are masked out anyway.
    rest = rest / rest.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)
    # Unsorted uniforms: only the slots j >= R are used, and sorted draws would favour late indices there.
    drawn = _inverse_cdf(rest, _uniforms(tuple(w.shape), w, generator))
    return torch.where(slots < ends[..., -1:], deterministic, drawn)


def get_resampler(name: str) -> Resampler:
    """A registered resampler by name (``multinomial``, ``stratified``, ``systematic``, ``residual``)."""
    if name not in RESAMPLERS:
        raise registry_error("resampler", name, list(RESAMPLERS))
    return RESAMPLERS[name]


def resample(log_weights: Tensor, method: str = "systematic", *, generator: RandomSource = None) -> Tensor:
    """Ancestor indices (..., N) drawn by ``method`` from unnormalised ``log_weights`` (..., N)."""
    return get_resampler(method)(log_weights, generator=generator)


@dataclass(frozen=True)
class GroupResampling:
    r"""The outcome of :func:`resample_groups` on log-weights of shape (..., P).

    Attributes:
        ancestors: (..., P) ancestor indices; the identity in groups that were not resampled.
        log_weights: (..., P) the log-weights afterwards: 0 (equal weights) in resampled groups,
            unchanged elsewhere.
        log_mass: (...) what resampling folded into the log normaliser,
            :math:`\log\frac1P\sum_i w^i` in resampled groups and 0 elsewhere (the running estimate
            :math:`\log\hat Z` adds it; the final one adds the same of the last weights).
        resampled: which groups were resampled: a Python bool for all, or a (...) bool tensor.
    """

    ancestors: Tensor
    log_weights: Tensor
    log_mass: Tensor
    resampled: bool | Tensor


def resample_groups(
    log_weights: Tensor, decision: bool | Tensor, *, resampler: Resampler = None, generator: RandomSource = None,  # type: ignore[assignment]
) -> GroupResampling:
    """Resamples the groups chosen by ``decision`` without a host sync.

    Args:
        log_weights: (..., P) unnormalised log-weights of independent groups of ``P`` particles.
        decision: ``True`` (resample every group) or a (...) bool tensor (e.g. ``ess < 0.5 * P``).
            The ancestors are drawn for every group and kept with ``torch.where`` where the decision
            says so, so that a data-dependent decision never synchronises with the device.
        resampler: a registered resampler (default :func:`systematic`).
        generator: the randomness of the draw.
    """
    draw = resampler if resampler is not None else systematic
    p = log_weights.shape[-1]
    lse = torch.logsumexp(log_weights, dim=-1)
    ancestors = draw(log_weights, generator=generator)
    log_mean = lse - math.log(p)
    if decision is True:
        return GroupResampling(ancestors, torch.zeros_like(log_weights), log_mean, True)
    if not isinstance(decision, Tensor) or decision.dtype != torch.bool:
        raise ArgumentError(f"decision must be True or a bool tensor of the groups' shape; got {decision!r}")
    identity = torch.arange(p, device=ancestors.device).expand_as(ancestors)
    chosen = decision[..., None]
    return GroupResampling(
        ancestors=torch.where(chosen, ancestors, identity),
        log_weights=torch.where(chosen, torch.zeros_like(log_weights), log_weights),
        log_mass=torch.where(decision, log_mean, torch.zeros_like(log_mean)),
        resampled=decision,
    )


def take_particles(values: Tensor, ancestors: Tensor) -> Tensor:
    """Reorders per-particle ``values`` by ``ancestors``: (P, ...) by (P,), or (G, P, ...) by (G, P)."""
    if ancestors.ndim == 1:
        return values.index_select(0, ancestors)
    g, p = ancestors.shape
    index = ancestors.reshape(g, p, *([1] * (values.ndim - 2))).expand_as(values)
    return torch.gather(values, 1, index)
