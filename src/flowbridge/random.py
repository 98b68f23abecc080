"""Generator plumbing: every random draw in flowbridge goes through here.

Draws are made on the generator's device and then moved, so that one seed gives the same numbers
whatever device the result lives on. :class:`StackedGenerators` gives each sample its own stream
(as EDM's ``StackedRandomGenerator``), so that sample ``i`` does not depend on the batch it is drawn
in; it costs one small draw per sample per call, which is why it is opt-in (``seeds=[...]``).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Union

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError


class StackedGenerators:
    """One ``torch.Generator`` per sample, seeded from ``seeds``.

    Args:
        seeds: one integer seed per sample.
        device: where the generators draw (CPU by default, so results are device-independent).
    """

    def __init__(self, seeds: Sequence[int], device: torch.device | str = "cpu") -> None:
        try:
            seeds = [operator.index(s) for s in seeds]  # ints, numpy or 0-d integer tensors
        except TypeError:
            raise ArgumentError(f"seeds must be a sequence of integers; got {seeds!r}") from None
        if len(seeds) == 0:
            raise ArgumentError("seeds must hold at least one seed")
        self.seeds = [int(s) for s in seeds]
        self.generators = [torch.Generator(device=device).manual_seed(s) for s in self.seeds]

    def __len__(self) -> int:
        return len(self.generators)

    def randn(self, shape: Sequence[int], *, dtype: torch.dtype, device: torch.device) -> Tensor:
        if shape[0] != len(self.generators):
            raise ArgumentError(f"batch size {shape[0]} disagrees with the number of seeds {len(self.generators)}")
        draws = [torch.randn(tuple(shape[1:]), generator=g, device=g.device, dtype=dtype) for g in self.generators]
        return torch.stack(draws).to(device)

    def rand(self, shape: Sequence[int], *, dtype: torch.dtype, device: torch.device) -> Tensor:
        if shape[0] != len(self.generators):
            raise ArgumentError(f"batch size {shape[0]} disagrees with the number of seeds {len(self.generators)}")
        draws = [torch.rand(tuple(shape[1:]), generator=g, device=g.device, dtype=dtype) for g in self.generators]
        return torch.stack(draws).to(device)


RandomSource = Union[torch.Generator, StackedGenerators, None]


def randn(
    shape: Sequence[int], *, generator: RandomSource = None, dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Standard normal draws of ``shape`` from ``generator`` (a Generator, StackedGenerators or None)."""
    dtype = dtype or torch.get_default_dtype()
    device = torch.device(device) if device is not None else torch.device("cpu")
    if isinstance(generator, StackedGenerators):
        return generator.randn(shape, dtype=dtype, device=device)
    gen_device = generator.device if generator is not None else device
    return torch.randn(tuple(shape), generator=generator, device=gen_device, dtype=dtype).to(device)


def rand(
    shape: Sequence[int], *, generator: RandomSource = None, dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Uniform [0, 1) draws, with the same device rules as :func:`randn`."""
    dtype = dtype or torch.get_default_dtype()
    device = torch.device(device) if device is not None else torch.device("cpu")
    if isinstance(generator, StackedGenerators):
        return generator.rand(shape, dtype=dtype, device=device)
    gen_device = generator.device if generator is not None else device
    return torch.rand(tuple(shape), generator=generator, device=gen_device, dtype=dtype).to(device)


def randn_like(x: Tensor, *, generator: RandomSource = None) -> Tensor:
    """Standard normal noise shaped like ``x`` (device and dtype from ``x``)."""
    return randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def index_seeds(seed: int, start: int, stop: int) -> list[int]:
    """Per-index seeds for samples ``start..stop-1`` of a run seeded with ``seed``.

    Each index gets its own stream (splitmix64 of ``(seed, index)``), so sample ``i`` is the same
    whichever chunk, batch size, process or device draws it.
    """
    mask = (1 << 64) - 1
    out = []
    for i in range(start, stop):
        z = (seed * 0x9E3779B97F4A7C15 + i + 1) & mask
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        out.append((z ^ (z >> 31)) & ((1 << 63) - 1))
    return out
