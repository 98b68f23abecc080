r"""Sampling at scale over Lightning's predict loop.

The samples of a run are indexed ``0..N-1`` and cut into fixed shards of ``shard_size`` indices.
Sample ``i`` is drawn from its own seed stream (:func:`flowbridge.random.index_seeds`), so a shard's
content depends only on ``(seed, shard range)``: not on the number of processes, nodes or devices
that Lightning's strategy spreads the shards over (its distributed sampler gives each rank a
disjoint set). Every shard is written as ``shard_<start>_<stop>.pt``; a shard already on disk is
skipped, so a killed run resumes where it stopped. Rank 0 merges the shards into one file.

flowbridge adds no distributed code of its own: DDP, multi-node and device placement are the
strategy's; this module only decides what each index means.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field as dataclass_field
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from flowbridge.errors import ArgumentError
from flowbridge.fields.base import Field
from flowbridge.samplers.api import sample
from flowbridge.samplers.base import get_solver
from flowbridge.samplers.recommend import AUTO


class ShardRange(NamedTuple):
    """Indices ``[start, stop)`` of one shard (a NamedTuple: Lightning moves batches of these)."""

    start: int
    stop: int

    @property
    def name(self) -> str:
        return f"shard_{self.start:010d}_{self.stop:010d}.pt"


class ShardDataset(Dataset[ShardRange]):
    """The shards of a run: item ``k`` is the index range of shard ``k``."""

    def __init__(self, num_samples: int, shard_size: int) -> None:
        for name, value in (("num_samples", num_samples), ("shard_size", shard_size)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ArgumentError(f"{name} must be an integer; got {value!r}")
        if num_samples < 1 or shard_size < 1:
            raise ArgumentError(f"num_samples and shard_size must be >= 1; got {num_samples}, {shard_size}")
        self.ranges = [ShardRange(lo, min(lo + shard_size, num_samples)) for lo in range(0, num_samples, shard_size)]

    def __len__(self) -> int:
        return len(self.ranges)

    def __getitem__(self, k: int) -> ShardRange:
        return self.ranges[k]


def _identity(batch: list[ShardRange]) -> list[ShardRange]:
    return batch


@dataclass
class SamplingJob:
    """What to draw: solver, steps, per-sample shape and options, and where shards go."""

    solver: str
    steps: int
    sample_shape: tuple[int, ...]
    seed: int
    out_dir: Path
    batch_size: int | None = None
    options: dict[str, Any] = dataclass_field(default_factory=dict)

    def __post_init__(self) -> None:
        # Fail when the job is described, not in every rank's first predict step.
        if self.solver != AUTO or self.options:
            get_solver(self.solver, **self.options)
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ArgumentError(f"steps must be a positive integer; got {self.steps!r}")


class ShardSampler(LightningModule):
    """A LightningModule whose predict step draws one shard and writes it to disk.

    Args:
        field: the field to sample (moved to each rank's device by Lightning).
        job: the :class:`SamplingJob`.
    """

    def __init__(self, field: Field, job: SamplingJob) -> None:
        super().__init__()
        self.field = field
        self.job = job

    def predict_step(self, batch: list[ShardRange], batch_idx: int) -> int:
        written = 0
        for shard in batch:
            path = self.job.out_dir / shard.name
            if path.exists():
                continue
            n = shard.stop - shard.start
            from flowbridge.random import index_seeds

            out = sample(
                self.field, self.job.solver, self.job.steps, shape=(n, *self.job.sample_shape),
                seeds=index_seeds(self.job.seed, shard.start, shard.stop), device=self.device,
                batch_size=self.job.batch_size, **self.job.options,
            )
            tmp = path.with_suffix(".tmp")
            torch.save(out.x.detach().cpu(), tmp)
            os.replace(tmp, path)  # atomic: a killed run never leaves a half-written shard
            written += 1
        return written


def merge_shards(out_dir: str | Path, num_samples: int, shard_size: int, *, output: str | Path | None = None) -> Tensor:
    """Concatenates the shards of a finished run in index order and optionally saves them.

    ``output`` ending in ``.npy`` is written with numpy, anything else with ``torch.save``.
    """
    out_dir = Path(out_dir)
    parts = []
    for shard in ShardDataset(num_samples, shard_size).ranges:
        path = out_dir / shard.name
        if not path.exists():
            raise FileNotFoundError(f"shard {path} is missing; rerun the job to complete it (finished shards are skipped)")
        try:
            part = torch.load(path, weights_only=True)
        except Exception as exc:  # truncated, corrupt or not a torch file: one message naming it
            raise ArgumentError(f"shard {path} could not be read ({type(exc).__name__}); delete it and rerun the job") from exc
        expected = shard.stop - shard.start
        if not isinstance(part, Tensor) or part.ndim < 1 or part.shape[0] != expected:
            what = f"a tensor of shape {tuple(part.shape)}" if isinstance(part, Tensor) else type(part).__name__
            raise ArgumentError(f"shard {path} holds {what}; expected a tensor of {expected} samples (delete it and rerun the job)")
        if parts and part.shape[1:] != parts[0].shape[1:]:
            raise ArgumentError(f"shard {path} has samples of shape {tuple(part.shape[1:])}, other shards {tuple(parts[0].shape[1:])}")
        parts.append(part)
    merged = torch.cat(parts)
    if output is not None:
        output = Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        if output.suffix == ".npy":
            import numpy as np

            np.save(output, merged.numpy())
        else:
            torch.save(merged, output)
    return merged


def sample_to_disk(
    field: Field,
    *,
    num_samples: int,
    sample_shape: Sequence[int],
    out_dir: str | Path,
    solver: str = "auto",
    steps: int = 20,
    seed: int = 0,
    shard_size: int = 4096,
    batch_size: int | None = None,
    output: str | Path | None = None,
    trainer: Trainer | None = None,
    **trainer_options: Any,
) -> Tensor | None:
    """Draws ``num_samples`` samples in shards over Lightning's predict loop; returns the merged
    samples on rank 0 (``None`` on other ranks).

    Args:
        field: the field to sample.
        num_samples: total number of samples ``N``.
        sample_shape: the shape of one sample (e.g. ``(2,)`` or ``(1, 8, 8)``).
        out_dir: where shards are written; existing shards are kept and skipped (resume).
        solver: as in :func:`flowbridge.sample`; extra solver options are not taken here (use a
            solver instance).
        steps: as in :func:`flowbridge.sample`.
        seed: the run's seed; sample ``i`` depends only on ``(seed, i)``.
        shard_size: indices per shard (the unit of work and of resumption).
        batch_size: chunk size inside a shard, to bound memory.
        output: also write the merged samples here (``.pt`` or ``.npy``).
        trainer: a configured :class:`lightning.pytorch.Trainer`; else one is built from
            ``trainer_options`` (e.g. ``devices=2, strategy="ddp_spawn", accelerator="cpu"``).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not isinstance(sample_shape, Sequence) or isinstance(sample_shape, str):
        raise ArgumentError(f"sample_shape must be a sequence of integers, e.g. (2,); got {sample_shape!r}")
    job = SamplingJob(solver=solver, steps=steps, sample_shape=tuple(int(s) for s in sample_shape), seed=int(seed),
                      out_dir=out_dir, batch_size=batch_size)
    module = ShardSampler(field, job)
    loader = DataLoader(ShardDataset(num_samples, shard_size), batch_size=1, collate_fn=_identity)
    if trainer is None:
        defaults: dict[str, Any] = dict(accelerator="auto", devices=1, logger=False, enable_checkpointing=False,
                                        enable_model_summary=False, enable_progress_bar=True)
        trainer = Trainer(**{**defaults, **trainer_options})
    trainer.predict(module, loader, return_predictions=False)
    if trainer.global_rank != 0:
        return None
    return merge_shards(out_dir, num_samples, shard_size, output=output)
