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
"""

from __future__ import annotations

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
