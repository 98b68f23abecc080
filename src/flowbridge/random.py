r"""Noise sources: every random draw in flowbridge goes through here.

A :class:`NoiseSource` draws standard normal and uniform tensors for a batch and can be split by
sample index. The entry points (``flowbridge.sample``, ``smc.sample``, ``inverse.sample``,
``bfn.sample``) take one through the same three arguments:

* ``generator=``: a ``torch.Generator`` (wrapped in :class:`GeneratorNoise`: one stream for the
  batch, reproducible for a fixed batch and chunk size) or any :class:`NoiseSource`;
* ``seeds=[...]``: :class:`SeedNoise`, one counter-based stream per sample: sample ``i`` depends
  only on its own seed, whatever the batch, chunk, process or device that draws it;
* ``seed=n``: :class:`SeedNoise` with per-index seeds derived from ``n`` (:func:`index_seeds`).

:class:`SeedNoise` is a batched counter-based generator: the ``k``-th draw of element ``j`` of
sample ``i`` is SplitMix64 at position ``k * 2**32 + j`` of the stream keyed by sample ``i``'s seed,
computed with int64 tensor arithmetic on the draw's device. No loop over samples and no copy from the
host, so seeded sampling runs at GPU speed and can be captured in a CUDA graph. SplitMix64 (Steele,
Lea & Flood 2014) passes BigCrush; Box–Muller turns pairs of uniforms into normals.

A :class:`GeneratorNoise` over a CPU generator draws on the CPU and copies to the state's device
(pinned, non-blocking), so that one seed gives the same numbers on every device; pass a CUDA
generator (``torch.Generator(device="cuda")``) to draw on the GPU directly.
"""

from __future__ import annotations

import math
import operator
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Union

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError

# SplitMix64 constants, as signed int64 (tensor arithmetic wraps modulo 2**64).
_GOLDEN = 0x9E3779B97F4A7C15 - (1 << 64)
_MIX1 = 0xBF58476D1CE4E5B9 - (1 << 64)
_MIX2 = 0x94D049BB133111EB - (1 << 64)
_STREAM = 1 << 32  # positions per draw: element j of draw k is at k * 2**32 + j


def _shift_right(z: Tensor, k: int) -> Tensor:
    """Logical right shift of int64 ``z`` (torch's ``>>`` is arithmetic on signed integers)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def _mix(z: Tensor) -> Tensor:
    """SplitMix64's output function (a bijective 64-bit hash)."""
    z = (z ^ _shift_right(z, 30)) * _MIX1
    z = (z ^ _shift_right(z, 27)) * _MIX2
    return z ^ _shift_right(z, 31)


def _uniform_from_bits(bits: Tensor, dtype: torch.dtype) -> Tensor:
    """Uniforms in (0, 1) from the top 53 bits of int64 ``bits``, never 0 (safe under ``log``)."""
    top = _shift_right(bits, 11).to(torch.float64)
    return ((top + 0.5) * (1.0 / (1 << 53))).to(dtype)


class NoiseSource(ABC):
    """A source of standard normal and uniform draws for a batch of samples.

    Subclasses implement :meth:`normal` and :meth:`uniform` (shape ``(batch, *event)``) and
    :meth:`split`. ``per_sample`` tells whether sample ``i``'s draws depend on its index alone.
    """

    per_sample: bool = False
    #: the source needs each draw's time interval (a Brownian path): :meth:`normal` takes ``interval``
    needs_interval: bool = False

    @abstractmethod
    def normal(
        self, shape: Sequence[int], *, dtype: torch.dtype, device: torch.device | str,
        interval: tuple[float, float] | None = None,
    ) -> Tensor:
        """Standard normal draws of ``shape`` (``interval``: the time step the draw is for)."""

    @abstractmethod
    def uniform(self, shape: Sequence[int], *, dtype: torch.dtype, device: torch.device | str) -> Tensor:
        """Uniform draws in [0, 1) of ``shape``."""

    def split(self, start: int, stop: int) -> "NoiseSource":
        """The source of samples ``start .. stop - 1`` (for chunked sampling); a shared stream
        returns itself (its chunks then depend on the chunk size)."""
        return self

    def fork(self, tag: int) -> "NoiseSource":
        """An independent stream for a separate use of the same samples (e.g. a final draw after a
        solver's run); a shared stream returns itself and simply continues."""
        return self

    def normal_like(self, x: Tensor, interval: tuple[float, float] | None = None) -> Tensor:
        """Standard normal noise shaped like ``x`` (device and dtype from ``x``)."""
        return self.normal(x.shape, dtype=x.dtype, device=x.device, interval=interval)

    def graph_key(self) -> object:
        """What identifies this source's draws inside a captured CUDA graph (see
        :mod:`flowbridge.samplers.graphs`)."""
        return id(self)


class GeneratorNoise(NoiseSource):
    """One ``torch.Generator`` stream for the whole batch (``None``: torch's default generator).

    Draws are made on the generator's device and then moved, so one seed gives the same numbers on
    every device.
    """

    def __init__(self, generator: torch.Generator | None = None) -> None:
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ArgumentError(f"generator must be a torch.Generator or a NoiseSource; got {type(generator).__name__}")
        self.generator = generator

    def _draw(self, fn, shape: Sequence[int], dtype: torch.dtype, device: torch.device | str) -> Tensor:  # type: ignore[no-untyped-def]
        device = torch.device(device)
        source = self.generator.device if self.generator is not None else device
        out = fn(tuple(shape), generator=self.generator, device=source, dtype=dtype)
        if out.device == device:
            return out
        if device.type == "cuda" and out.device.type == "cpu":
            # Pinned and non-blocking: a copy from pageable memory would synchronise the stream.
            return out.pin_memory().to(device, non_blocking=True)
        return out.to(device)

    def normal(self, shape: Sequence[int], *, dtype: torch.dtype, device: torch.device | str,
               interval: tuple[float, float] | None = None) -> Tensor:
        return self._draw(torch.randn, shape, dtype, device)

    def uniform(self, shape: Sequence[int], *, dtype: torch.dtype, device: torch.device | str) -> Tensor:
        return self._draw(torch.rand, shape, dtype, device)

    def graph_key(self) -> object:
        return ("generator", id(self.generator))


class SeedNoise(NoiseSource):
    """One counter-based stream per sample, keyed by its seed (see the module docstring).

    Args:
        seeds: one integer seed per sample (ints, numpy integers or 0-dim integer tensors).
        device: where the keys live initially (they follow each draw's device).
    """

    per_sample = True

    def __init__(self, seeds: Sequence[int] | Tensor, device: torch.device | str = "cpu") -> None:
        if isinstance(seeds, Tensor):
            if seeds.is_floating_point() or seeds.ndim != 1:
                raise ArgumentError(f"seeds must be a 1-D integer tensor or a sequence of integers; got {seeds.dtype} of shape {tuple(seeds.shape)}")
            values = seeds.detach().to("cpu", torch.int64).tolist()  # sync-ok: construction, before any loop
        else:
            try:
                values = [operator.index(s) for s in seeds]  # ints, numpy or 0-dim integer tensors
            except TypeError:
                raise ArgumentError(f"seeds must be a sequence of integers; got {seeds!r}") from None
        if len(values) == 0:
            raise ArgumentError("seeds must hold at least one seed")
        self.seeds = [int(s) for s in values]
        # Keys: each seed hashed into the 64-bit state space, so that nearby seeds start far apart.
        raw = torch.tensor([_signed(s) for s in self.seeds], dtype=torch.int64)
        self._keys = {torch.device(device): _mix(raw + _GOLDEN)}
        self.draws = 0  # the stream position: how many draws have been made

    def __len__(self) -> int:
        return len(self.seeds)

    def _keys_on(self, device: torch.device) -> Tensor:
        keys = self._keys.get(device)
        if keys is None:  # once per device, before the step loop's first draw
            keys = self._keys[device] = next(iter(self._keys.values())).to(device)
        return keys

    def _bits(self, shape: Sequence[int], count: int, device: torch.device) -> Tensor:
        """(batch, count) int64 hashes at this draw's positions of every sample's stream."""
        if shape[0] != len(self.seeds):
            raise ArgumentError(f"batch size {shape[0]} disagrees with the number of seeds {len(self.seeds)}")
        keys = self._keys_on(device)
        positions = torch.arange(count, device=device, dtype=torch.int64) + self.draws * _STREAM
        self.draws += 1
        return _mix(keys[:, None] + positions[None, :] * _GOLDEN)

    def normal(self, shape: Sequence[int], *, dtype: torch.dtype, device: torch.device | str,
               interval: tuple[float, float] | None = None) -> Tensor:
        device = torch.device(device)
        event = int(math.prod(shape[1:]))
        if dtype == torch.float64:  # 53-bit uniforms from two hashes per element
            bits = self._bits(shape, 2 * event, device)
            u1, u2 = _uniform_from_bits(bits[:, :event], dtype), _uniform_from_bits(bits[:, event:], dtype)
        else:  # lower precisions: the two 32-bit halves of one hash (tails to 6.7 sigma)
            bits = self._bits(shape, event, device)
            u1 = (_shift_right(bits, 32).to(torch.float32) + 0.5) * 2.0**-32
            u2 = ((bits & 0xFFFFFFFF).to(torch.float32) + 0.5) * 2.0**-32
        z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos((2.0 * math.pi) * u2)
        return z.to(dtype).reshape(tuple(shape))

    def uniform(self, shape: Sequence[int], *, dtype: torch.dtype, device: torch.device | str) -> Tensor:
        device = torch.device(device)
        event = int(math.prod(shape[1:]))
        return _uniform_from_bits(self._bits(shape, event, device), dtype).reshape(tuple(shape))

    def split(self, start: int, stop: int) -> "SeedNoise":
        part = SeedNoise.__new__(SeedNoise)
        part.seeds = self.seeds[start:stop]
        part._keys = {d: k[start:stop] for d, k in self._keys.items()}
        part.draws = self.draws
        return part

    def graph_key(self) -> object:
        return ("seeds", tuple(self.seeds), self.draws)

    def fork(self, tag: int) -> "SeedNoise":
        forked = SeedNoise.__new__(SeedNoise)
        forked.seeds = list(self.seeds)
        offset = _signed((tag + 1) * 0xD1B54A32D192ED03)
        forked._keys = {d: _mix(k + offset) for d, k in self._keys.items()}
        forked.draws = 0
        return forked


def _signed(value: int) -> int:
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= (1 << 63) else value


#: Kept for code written before :class:`SeedNoise`: per-sample streams from seeds.
StackedGenerators = SeedNoise

RandomSource = Union[torch.Generator, NoiseSource, None]


def as_noise_source(generator: RandomSource) -> NoiseSource:
    """``generator`` as a :class:`NoiseSource` (a torch.Generator or ``None`` is wrapped)."""
    if isinstance(generator, NoiseSource):
        return generator
    return GeneratorNoise(generator)


def torch_generator(generator: RandomSource, what: str) -> torch.Generator | None:
    """The ``torch.Generator`` behind ``generator`` for code that draws through torch directly
    (one stream for the whole batch); per-sample sources are refused with a message naming ``what``."""
    if isinstance(generator, GeneratorNoise):
        return generator.generator
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    raise ArgumentError(f"{what} draws one stream for the whole batch: pass a torch.Generator (not seeds); got {type(generator).__name__}")


def noise_source(generator: RandomSource = None, seeds: Sequence[int] | None = None, seed: int | None = None,
                 batch: int | None = None) -> NoiseSource:
    """The noise source of an entry point from its ``generator`` / ``seeds`` / ``seed`` arguments.

    Raises:
        ArgumentError: more than one given, ``seeds`` of the wrong length, or a wrong type.
    """
    given = sum(v is not None for v in (generator, seeds, seed))
    if given > 1:
        raise ArgumentError("pass at most one of generator, seeds and seed")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ArgumentError(f"seed must be an integer; got {type(seed).__name__}")
        if batch is None:
            raise ArgumentError("seed= needs the number of samples: pass batch=")
        return SeedNoise(index_seeds(seed, 0, batch))
    if seeds is not None:
        source = seeds if isinstance(seeds, SeedNoise) else SeedNoise(list(seeds) if not isinstance(seeds, Tensor) else seeds)
        if batch is not None and len(source) != batch:
            raise ArgumentError(f"seeds has {len(source)} entries but the batch has {batch} samples")
        return source
    if generator is not None and not isinstance(generator, (torch.Generator, NoiseSource)):
        raise ArgumentError(
            f"generator must be a torch.Generator or a NoiseSource (SeedNoise, BrownianPath); got {type(generator).__name__}"
        )
    return as_noise_source(generator)


class GroupedNoise(NoiseSource):
    """Per-sample streams for interacting particles: ``groups`` populations of ``particles`` each.

    Sample (group) ``g`` is keyed by one seed; its particles draw from per-particle streams derived
    from it (:func:`index_seeds`), and draws of one value per group (resampling uniforms, leading
    dimension ``groups``) from a fork of the group streams. Group ``g`` thus depends on its seed
    alone, whatever the number of groups or the chunk it is drawn in; particles inside a group
    interact, so a group is never split.

    Args:
        seeds: one integer seed per group.
        particles: particles per group.
        member_seeds: the particles' own seeds (``groups * particles`` of them) instead of seeds
            derived from the group's.
    """

    per_sample = True

    def __init__(self, seeds: Sequence[int], particles: int, member_seeds: Sequence[int] | None = None) -> None:
        if isinstance(particles, bool) or not isinstance(particles, int) or particles < 1:
            raise ArgumentError(f"particles must be a positive integer; got {particles!r}")
        groups = SeedNoise(seeds)  # checks the seeds
        self.group_seeds = groups.seeds
        self.particles = particles
        self.groups = groups.fork(0)
        if member_seeds is None:
            member_seeds = [s for g in self.group_seeds for s in index_seeds(g & ((1 << 63) - 1), 0, particles)]
        elif len(member_seeds) != len(self.group_seeds) * particles:
            raise ArgumentError(f"member_seeds has {len(member_seeds)} entries; expected {len(self.group_seeds) * particles}")
        self.members = SeedNoise(member_seeds)

    def __len__(self) -> int:
        return len(self.group_seeds)

    def _pick(self, shape: Sequence[int]) -> NoiseSource:
        if shape and shape[0] == len(self.members):
            return self.members
        if shape and shape[0] == len(self.group_seeds):
            return self.groups
        raise ArgumentError(
            f"batch size {shape[0] if shape else None} is neither the number of groups {len(self.group_seeds)} "
            f"nor of particles {len(self.members)}"
        )

    def normal(self, shape: Sequence[int], *, dtype: torch.dtype, device: torch.device | str,
               interval: tuple[float, float] | None = None) -> Tensor:
        return self._pick(shape).normal(shape, dtype=dtype, device=device)

    def uniform(self, shape: Sequence[int], *, dtype: torch.dtype, device: torch.device | str) -> Tensor:
        return self._pick(shape).uniform(shape, dtype=dtype, device=device)

    def split(self, start: int, stop: int) -> "GroupedNoise":
        """The groups ``start .. stop - 1`` (their particles with them)."""
        part = GroupedNoise.__new__(GroupedNoise)
        part.group_seeds, part.particles = self.group_seeds[start:stop], self.particles
        part.groups = self.groups.split(start, stop)
        part.members = self.members.split(start * self.particles, stop * self.particles)
        return part

    def fork(self, tag: int) -> "GroupedNoise":
        forked = GroupedNoise.__new__(GroupedNoise)
        forked.group_seeds, forked.particles = self.group_seeds, self.particles
        forked.groups, forked.members = self.groups.fork(tag), self.members.fork(tag)
        return forked

    def graph_key(self) -> object:
        return ("grouped", self.groups.graph_key(), self.members.graph_key())


def grouped_noise_source(
    generator: RandomSource, seeds: Sequence[int] | None, seed: int | None, groups: int, particles: int,
    *, per_particle: bool = False,
) -> NoiseSource:
    """The noise source of a particle method (``groups`` populations of ``particles``) from the
    ``generator`` / ``seeds`` / ``seed`` arguments: ``seeds`` (one per group, or with
    ``per_particle`` one per particle) and ``seed`` give a :class:`GroupedNoise`; a generator is one
    stream for everything.

    Raises:
        ArgumentError: more than one given, ``seeds`` of the wrong length, or a wrong type.
    """
    for name, value in (("groups", groups), ("particles", particles)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ArgumentError(f"{name} must be a positive integer; got {value!r}")
    given = sum(v is not None for v in (generator, seeds, seed))
    if given > 1:
        raise ArgumentError("pass at most one of generator, seeds and seed")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ArgumentError(f"seed must be an integer; got {type(seed).__name__}")
        return GroupedNoise(index_seeds(seed, 0, groups), particles)
    if seeds is not None:
        if isinstance(seeds, SeedNoise):
            seeds = seeds.seeds
        if per_particle:
            values = noise_source(seeds=seeds, batch=groups * particles).seeds  # type: ignore[attr-defined]
            return GroupedNoise(values[::particles], particles, member_seeds=values)
        values = noise_source(seeds=seeds, batch=groups).seeds  # type: ignore[attr-defined]
        return GroupedNoise(values, particles)
    return noise_source(generator)


def _check_shape(shape: Sequence[int]) -> tuple[int, ...]:
    try:
        dims = tuple(shape)
    except TypeError:
        raise ArgumentError(f"shape must be a sequence of non-negative integers; got {shape!r}") from None
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in dims):
        raise ArgumentError(f"shape must be a sequence of non-negative integers; got {shape!r}")
    return dims


def randn(
    shape: Sequence[int], *, generator: RandomSource = None, dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Standard normal draws of ``shape`` from ``generator`` (a Generator, a NoiseSource or None)."""
    dtype = dtype or torch.get_default_dtype()
    device = torch.device(device) if device is not None else torch.device("cpu")
    return as_noise_source(generator).normal(_check_shape(shape), dtype=dtype, device=device)


def rand(
    shape: Sequence[int], *, generator: RandomSource = None, dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Uniform [0, 1) draws, with the same device rules as :func:`randn`."""
    dtype = dtype or torch.get_default_dtype()
    device = torch.device(device) if device is not None else torch.device("cpu")
    return as_noise_source(generator).uniform(_check_shape(shape), dtype=dtype, device=device)


def randn_like(x: Tensor, *, generator: RandomSource = None) -> Tensor:
    """Standard normal noise shaped like ``x`` (device and dtype from ``x``)."""
    if not isinstance(x, Tensor):
        raise ArgumentError(f"x must be a tensor; got {type(x).__name__}")
    return randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def index_seeds(seed: int, start: int, stop: int) -> list[int]:
    """Per-index seeds for samples ``start..stop-1`` of a run seeded with ``seed``.

    Each index gets its own stream (splitmix64 of ``(seed, index)``), so sample ``i`` is the same
    whichever chunk, batch size, process or device draws it.
    """
    for name, value in (("seed", seed), ("start", start), ("stop", stop)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ArgumentError(f"{name} must be an integer; got {type(value).__name__}")
    if not 0 <= start <= stop:
        raise ArgumentError(f"index_seeds needs 0 <= start <= stop; got start={start}, stop={stop}")
    mask = (1 << 64) - 1
    out = []
    for i in range(start, stop):
        z = (seed * 0x9E3779B97F4A7C15 + i + 1) & mask
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        out.append((z ^ (z >> 31)) & ((1 << 63) - 1))
    return out


__all__ = [
    "GeneratorNoise",
    "GroupedNoise",
    "NoiseSource",
    "RandomSource",
    "SeedNoise",
    "StackedGenerators",
    "as_noise_source",
    "grouped_noise_source",
    "index_seeds",
    "noise_source",
    "torch_generator",
    "rand",
    "randn",
    "randn_like",
]
