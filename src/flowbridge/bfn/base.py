"""What the three BFN variants share: result types, the n-step time index, categorical draws."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from flowbridge._utils import check_state, check_unit_interval
from flowbridge.errors import ArgumentError
from flowbridge.random import RandomSource, noise_source, rand
from flowbridge.samplers.base import SamplingResult

LN2 = math.log(2.0)


@dataclass(frozen=True)
class BFNSample(SamplingResult):
    """Samples drawn from a BFN.

    Attributes:
        x: the samples, in data space (floats for continuous/discretized data, long class indices
            for discrete data).
        nfe: network evaluations per sample, the final output evaluation included.
        params: the input distribution's parameters at ``t = 1`` (``mu`` for continuous and
            discretized data, the logits ``y`` for discrete data).
    """

    params: Tensor


def sample_on_flow(
    bfn: Any, net: nn.Module, solver: str | Any, steps: int, *, shape: Sequence[int], flow_shape: Sequence[int],
    generator: RandomSource, seeds: Sequence[int] | None, seed: int | None, grid: str | None,
    grid_options: dict[str, float] | None, t_span: tuple[float, float] | None, batch_size: int | None,
    progress: bool, callback: Any, dtype: torch.dtype | None, device: torch.device | str | None, solver_options: dict[str, Any],
) -> BFNSample:
    """BFN-Solver: a flowbridge Gaussian-path solver on the Bayesian flow (``flow_shape``), then the
    output distribution's draw at ``t = 1`` (:meth:`final_sample`), chunk by chunk, with the noise
    source of the shared vocabulary (the final draw from a forked stream of the same samples)."""
    from flowbridge.samplers.api import sample as flowbridge_sample

    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence) or len(shape) < 1:
        raise ArgumentError(f"shape must be (num_samples, *event); got {shape!r}")
    total = int(shape[0])
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ArgumentError(f"batch_size must be a positive integer; got {batch_size!r}")
    source = noise_source(generator, seeds, seed, total)
    span = t_span if t_span is not None else (bfn.schedule.t_min, 1.0)
    # One run of flowbridge.sample over all chunks: one progress display, callbacks with the
    # chunks' offsets; then the output distribution's draw per chunk from a fork of its streams.
    out = flowbridge_sample(
        bfn.field(net), solver, steps, shape=(total, *flow_shape[1:]), generator=source, grid=grid,
        grid_options=grid_options, t_span=span, batch_size=batch_size, progress=progress, callback=callback,
        dtype=dtype, device=device, **solver_options,
    )
    chunk = batch_size or total
    xs = []
    for lo in range(0, total, chunk):
        hi = min(lo + chunk, total)
        part = source if (lo, hi) == (0, total) else source.split(lo, hi)
        xs.append(bfn.final_sample(net, out.x[lo:hi], generator=part.fork(1)))
    x = xs[0] if len(xs) == 1 else torch.cat(xs)
    return BFNSample(x=x, nfe=out.nfe + 1, params=out.x)


@dataclass(frozen=True)
class LikelihoodBound:
    r"""A negative log-likelihood bound :math:`-\log p(x) \le L + L^r` on data, in nats.

    Attributes:
        nats: (B,) bound per datum (the diffusion term plus the reconstruction term), each the mean
            over ``repeats`` Monte-Carlo draws.
        dims: number of dimensions per datum (pixels, characters, coordinates).
        n_steps: ``None`` for the continuous-time bound :math:`L^\infty`, else the ``n`` of :math:`L^n`.
        terms: (B,) per-datum ``"diffusion"`` and ``"reconstruction"`` parts.
    """

    nats: Tensor
    dims: int
    n_steps: int | None
    terms: dict[str, Tensor] = field(default_factory=dict)

    @property
    def mean_nats(self) -> float:
        """Mean bound per datum, nats."""
        return float(self.nats.mean())  # sync-ok: a reported number, computed once

    @property
    def bits_per_dim(self) -> float:
        """Mean bound in bits per dimension."""
        return self.mean_nats / (self.dims * LN2)

    @property
    def standard_error(self) -> float:
        """Standard error of :attr:`mean_nats` over the data (Monte-Carlo and data spread)."""
        n = self.nats.shape[0]
        return float(self.nats.std() / math.sqrt(n)) if n > 1 else float("nan")  # sync-ok: reported once


def step_index(t: Tensor, n_steps: int) -> tuple[Tensor, Tensor]:
    r"""Maps times :math:`t \in [0, 1)` to the n-step loss's step :math:`i = \lfloor tn\rfloor + 1` and its
    start time :math:`t_{i-1} = (i-1)/n`, so that ``t ~ U[0, 1)`` draws ``i`` uniformly from ``1..n``.

    Returns:
        ``(i, t_prev)``: ``i`` as floats (B,) in ``[1, n]`` and ``t_prev`` (B,).
    """
    check_n_steps(n_steps)
    check_unit_interval(t)
    i = torch.clamp(torch.floor(t * n_steps), 0, n_steps - 1) + 1
    return i, (i - 1) / n_steps


def check_n_steps(n_steps: int, name: str = "n_steps") -> int:
    """Validates a step count: an int >= 1."""
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ArgumentError(f"{name} must be an integer >= 1; got {n_steps!r}")
    return n_steps


def check_times(t: Tensor, x: Tensor) -> Tensor:
    """Validates training times: a (B,) tensor matching ``x``'s batch (cast to ``x``'s dtype)."""
    if not isinstance(t, Tensor):
        raise ArgumentError(f"t must be a tensor of shape (B,); got {type(t).__name__}")
    if t.ndim != 1 or t.shape[0] != x.shape[0]:
        raise ArgumentError(f"t must have shape ({x.shape[0]},) to match x; got {tuple(t.shape)}")
    check_unit_interval(t)  # host-side times only: no device sync
    if x.is_floating_point():
        return t.to(x.dtype)
    return t if t.is_floating_point() else t.to(torch.get_default_dtype())


def sample_categorical(logits: Tensor, *, generator: RandomSource = None) -> Tensor:
    """One draw per row of ``softmax(logits)`` over the last axis (Gumbel-max; long indices).

    Drawn through :mod:`flowbridge.random` so per-sample seeds and device rules apply.
    """
    check_state(logits, "logits")
    u = rand(logits.shape, generator=generator, dtype=logits.dtype, device=logits.device)
    tiny = torch.finfo(logits.dtype).tiny
    neg_log_u = -torch.log(u.clamp_min(tiny))
    gumbel = -torch.log(neg_log_u.clamp_min(tiny))
    return torch.argmax(logits + gumbel, dim=-1)


def sum_over_dims(value: Tensor) -> Tensor:
    """Sums all but the batch axis: per-datum nats from per-dimension terms."""
    return value.reshape(value.shape[0], -1).sum(dim=1)


def flat_dims(shape: torch.Size | tuple[int, ...]) -> int:
    """Number of dimensions of one datum of batch ``shape``."""
    return int(math.prod(shape[1:]))
