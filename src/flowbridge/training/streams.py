"""Batches for training: resumable, rank-sharded, and reproducible from a seed.

Lightning's ``DataLoader`` path collates sample by sample and cannot resume in the middle of an
epoch. The data here are in-memory tensors, so a batch is one ``index_select``; the order of epoch
``e`` is a permutation drawn from ``seed`` and ``e`` alone, and the stream's position is saved in
the checkpoint (``state_dict``), so a run resumed mid-epoch sees exactly the batches the
uninterrupted run would have seen.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError


@dataclass
class DataBatch:
    """One training batch.

    Attributes:
        target: (B, ...) samples of the target distribution (``x1``, data).
        source: (B, ...) source samples for data-to-data transport, or None (noise is drawn).
        label: (B,) long class labels aligned with ``target``, or None.
    """

    target: Tensor
    source: Tensor | None = None
    label: Tensor | None = None

    def __len__(self) -> int:
        return self.target.shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False, **kwargs: object) -> "DataBatch":
        """The batch on ``device`` (itself when it is there already).

        Lightning moves batches by calling ``to`` on any object that has one, so a batch moves with
        one call per tensor instead of a walk over its fields.
        """
        device = torch.device(device)
        if self.target.device == device:
            return self
        move = (lambda t: None if t is None else t.to(device, non_blocking=non_blocking))  # noqa: E731
        return DataBatch(move(self.target), move(self.source), move(self.label))


@dataclass
class PredictBatch:
    """A block of sample indices to generate (index ``i`` always gets the same noise)."""

    index: Tensor


def epoch_permutation(n: int, seed: int, epoch: int, stream: int = 0) -> Tensor:
    """The order of epoch ``epoch``: a permutation of ``range(n)`` from ``(seed, epoch, stream)`` alone."""
    g = torch.Generator().manual_seed(derive_seed(seed, epoch, stream))
    return torch.randperm(n, generator=g)


_MASK64 = (1 << 64) - 1


def _splitmix64(z: int) -> int:
    """One round of SplitMix64's output function (Steele et al. 2014): a bijective 64-bit mixer."""
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def derive_seed(*keys: int) -> int:
    """A 63-bit seed from integer keys, hashed key by key with SplitMix64.

    Distinct key tuples give unrelated seeds (so steps, ranks and streams draw independent numbers);
    it costs a few microseconds, which matters once per training step.
    """
    h = 0x2545F4914F6CDD1D
    for k in keys:
        h = _splitmix64(h ^ (int(k) & _MASK64))
    return h >> 1


class BatchStream:
    """A resumable iterable of :class:`DataBatch` over in-memory tensors, sharded across ranks.

    Each epoch draws a permutation from ``(seed, epoch)`` (when ``shuffle``); the global batch of
    ``batch_size * world_size`` rows is split so that rank ``r`` takes its slice. With
    ``independent_source`` the source rows follow their own permutation, so that source and target
    are independent (unpaired data-to-data transport); otherwise they stay aligned.

    Lightning calls :meth:`set_epoch` (found through :attr:`sampler`) at every epoch start and
    saves :meth:`state_dict` in checkpoints.

    Args:
        target: (N, ...) target samples.
        batch_size: rows per batch and rank.
        seed: seed of the epoch orders.
        label: (N,) labels aligned with ``target``, or None.
        source: (M, ...) source samples, or None.
        independent_source: shuffle ``source`` independently of ``target``.
        shuffle: permute each epoch (False for validation).
        drop_last: drop the last incomplete global batch.
        rank: this process's rank (its shard).
        world_size: number of processes (shards).
    """

    def __init__(
        self,
        target: Tensor,
        batch_size: int,
        *,
        seed: int = 0,
        label: Tensor | None = None,
        source: Tensor | None = None,
        independent_source: bool = False,
        shuffle: bool = True,
        drop_last: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
            raise ArgumentError(f"batch_size must be an integer >= 1; got {batch_size!r}")
        if batch_size < 1:
            raise ArgumentError(f"batch_size must be at least 1; got {batch_size}")
        if not 0 <= rank < world_size:
            raise ArgumentError(f"need 0 <= rank < world_size; got rank={rank}, world_size={world_size}")
        if source is not None and not independent_source and source.shape[0] != target.shape[0]:
            raise ArgumentError(f"paired source must have as many rows as target; got {source.shape[0]} and {target.shape[0]}")
        self.target, self.label, self.source = target, label, source
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.independent_source, self.shuffle, self.drop_last = independent_source, shuffle, drop_last
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self._position = 0
        self._resume_position: int | None = None
        global_batch = self.batch_size * world_size
        n = target.shape[0] if source is None or not independent_source else min(target.shape[0], source.shape[0])
        self.num_rows = n
        self._len = n // global_batch if drop_last else -(-n // global_batch)
        if self._len == 0:
            raise ArgumentError(
                f"{n} samples give no complete batch of {self.batch_size} x {world_size} ranks; lower batch_size"
            )

    # Lightning inspects ``loader.sampler`` (for ``set_epoch``) and ``loader.batch_sampler``.
    batch_sampler = None

    @property
    def sampler(self) -> "BatchStream":
        """Lightning looks for ``set_epoch`` on ``loader.sampler``."""
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self._len

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self._position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self._resume_position = int(state["position"])

    def _rows(self, count: int, stream: int) -> Tensor:
        # Orders are drawn on the CPU (the same on any device) and moved once per epoch.
        if not self.shuffle:
            return torch.arange(count, device=self.target.device)
        return epoch_permutation(count, self.seed, self.epoch, stream).to(self.target.device)

    def __iter__(self) -> Iterator[DataBatch]:
        start = self._resume_position if self._resume_position is not None else 0
        self._resume_position = None
        self._position = start
        return self._batches(start)

    def _batches(self, start: int) -> Iterator[DataBatch]:
        # Orders are drawn lazily, at the first batch, so that set_epoch() called after iter() counts.
        order = src_order = None
        global_batch = self.batch_size * self.world_size
        for position in range(start, self._len):
            if order is None:
                order = self._rows(self.target.shape[0], 0)[: self.num_rows]
                if self.source is not None and self.independent_source:
                    src_order = self._rows(self.source.shape[0], 1)[: self.num_rows]
            lo = position * global_batch + self.rank * self.batch_size
            idx = order[lo : min(lo + self.batch_size, self.num_rows)]
            self._position = position + 1
            source = None
            if self.source is not None:
                source = self.source.index_select(0, src_order[lo : lo + idx.shape[0]] if src_order is not None else idx)
            label = self.label.index_select(0, idx) if self.label is not None else None
            yield DataBatch(target=self.target.index_select(0, idx), source=source, label=label)


class PredictStream:
    """Blocks of sample indices ``0..num_samples-1`` for ``Trainer.predict`` (sharded across ranks)."""

    def __init__(self, num_samples: int, batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        if num_samples < 1 or batch_size < 1:
            raise ArgumentError(f"num_samples and batch_size must be positive; got {num_samples}, {batch_size}")
        self.num_samples, self.batch_size, self.rank, self.world_size = num_samples, batch_size, rank, world_size
        blocks = -(-num_samples // batch_size)
        self._blocks = list(range(rank, blocks, world_size))

    def __len__(self) -> int:
        return len(self._blocks)

    def __iter__(self) -> Iterator[PredictBatch]:
        for b in self._blocks:
            yield PredictBatch(index=torch.arange(b * self.batch_size, min((b + 1) * self.batch_size, self.num_samples)))
