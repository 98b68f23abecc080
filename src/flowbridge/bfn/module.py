"""``BFNModule``: trains and samples any BFN variant from a recipe (Lightning).

The continuous variant also trains inside :class:`~flowbridge.training.GenerativeModule` (its flow is
a Gaussian path; see :class:`~flowbridge.bfn.ContinuousBFNObjective`); the discretized and discrete
variants need this module, because their network sees the input distribution's parameters
(``2C`` output channels, or K-dim probability vectors per position) rather than a noised sample.

One training step: ``x ~ data`` (transformed: ``quantize`` to the bins, ``binarize``, or ``classes``),
``t ~ U[0, 1)``, loss = :math:`L^\\infty` or :math:`L^n` in nats per dimension. Validation logs the
likelihood bound on held-out data (``val/nats`` per datum, ``val/bits_per_dim``). All randomness of
step ``k`` comes from a generator seeded with ``(seed, stream, rank, k, batch_idx)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from flowbridge.bfn.continuous import ContinuousBFN
from flowbridge.bfn.discrete import DiscreteBFN
from flowbridge.bfn.discretized import DiscretizedBFN
from flowbridge.bfn.likelihood import nll_bound
from flowbridge.bfn.objective import BFNLoss
from flowbridge.random import rand
from flowbridge.samplers import SOLVERS
from flowbridge.samplers.grids import GRIDS
from flowbridge.training.streams import DataBatch, PredictBatch, derive_seed

TRANSFORMS: tuple[str, ...] = ("none", "quantize", "binarize", "classes")
_TRAIN, _VAL, _PREDICT = 0, 1, 2


@dataclass
class BFNSamplerConfig:
    """How a BFN is sampled: ``method="original"`` (the paper's n-step sampler) or any registered
    Gaussian-path solver name (``dpmpp_2m``, ``ddim``, ...), ``steps``, ``grid`` and solver options."""

    method: str = "dpmpp_2m"
    steps: int = 20
    grid: str = "logsnr"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method != "original" and self.method not in SOLVERS:
            raise ValueError(f"unknown BFN sampling method {self.method!r}; use 'original' or one of: {', '.join(sorted(SOLVERS))}")
        if self.grid not in GRIDS:
            raise ValueError(f"unknown grid {self.grid!r}; known grids: {', '.join(sorted(GRIDS))}")
        if not (isinstance(self.steps, int) and self.steps >= 1):
            raise ValueError(f"steps must be a positive integer; got {self.steps!r}")


class BFNModule(pl.LightningModule):
    """Trains a BFN network with :math:`L^\\infty` or :math:`L^n`; samples with the original or a fast sampler.

    Args:
        net: the network (``MLP`` or ``UNet``) with the input/output sizes the variant needs.
        bfn: a :class:`ContinuousBFN`, :class:`DiscretizedBFN` or :class:`DiscreteBFN`.
        n_steps: ``None`` for the continuous-time loss, else the ``n`` of :math:`L^n`.
        transform: how data batches become BFN data: ``none``, ``quantize`` (to the discretized
            BFN's bins), ``binarize`` (``x > 0`` -> class 1), ``classes`` (round to class indices).
        optimizer: callable building the optimizer.
        lr_scheduler: callable building the learning-rate scheduler.
        sampler: the sampler preset used by ``generate`` / callbacks.
        seed: seed of every per-step random stream.
        log_every_n_steps: how often the training loss is logged.
    """

    def __init__(
        self,
        net: nn.Module,
        bfn: ContinuousBFN | DiscreteBFN,
        n_steps: int | None = None,
        transform: str = "none",
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        sampler: BFNSamplerConfig | None = None,
        seed: int = 0,
        log_every_n_steps: int = 50,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {list(TRANSFORMS)}; got {transform!r}")
        if transform == "quantize" and not isinstance(bfn, DiscretizedBFN):
            raise ValueError("transform='quantize' needs a DiscretizedBFN (it maps data onto its bins)")
        if transform in ("binarize", "classes") and not isinstance(bfn, DiscreteBFN):
            raise ValueError(f"transform={transform!r} makes class indices and needs a DiscreteBFN")
        if transform == "binarize" and bfn.num_classes != 2:
            raise ValueError(f"transform='binarize' makes 2 classes; the DiscreteBFN has num_classes={bfn.num_classes}")
        self.net, self.bfn, self.n_steps, self.transform = net, bfn, n_steps, transform
        self.objective = BFNLoss(bfn, n_steps)
        self.optimizer_factory, self.scheduler_factory = optimizer, lr_scheduler
        self.sampler_config = sampler if sampler is not None else BFNSamplerConfig()
        self.seed, self.log_every_n_steps = int(seed), max(1, int(log_every_n_steps))
        self.event_shape: tuple[int, ...] | None = None

    @property
    def null_label(self) -> None:
        """BFN recipes are unconditional (the callbacks ask)."""
        return None

    # ------------------------------------------------------------------ data
    def prepare(self, x: Tensor) -> Tensor:
        """A data batch as BFN data (see ``transform``); validated by the BFN."""
        if self.transform == "quantize":
            x = self.bfn.quantise(x)
        elif self.transform == "binarize":
            x = (x > 0).long()
        elif self.transform == "classes":
            x = torch.round(x).long()
        self.bfn.check_data(x)
        return x

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None or not hasattr(dm, "event_shape"):
            return
        dm.setup(stage)
        self.event_shape = tuple(dm.event_shape)
        x = self.prepare(dm.reference(2).to(self.device))  # fails early on data the BFN cannot take
        with torch.no_grad():
            self.objective(self.net, x, torch.full((2,), 0.5, device=self.device))

    def step_generator(self, stream: int, *keys: int) -> torch.Generator:
        g = torch.Generator(device=self.device)
        g.manual_seed(derive_seed(self.seed, stream, self.global_rank, *keys))
        return g

    # ------------------------------------------------------------------ training
    def training_step(self, batch: DataBatch, batch_idx: int) -> Tensor:
        g = self.step_generator(_TRAIN, self.global_step, batch_idx)
        x = self.prepare(batch.target)
        t = rand((x.shape[0],), generator=g, device=x.device, dtype=torch.float32)
        out = self.objective(self.net, x, t, generator=g)
        if self.global_step % self.log_every_n_steps == 0:
            self.log("train/loss", out.loss, prog_bar=True)
        return out.loss

    def validation_step(self, batch: DataBatch, batch_idx: int) -> None:
        g = self.step_generator(_VAL, batch_idx)
        x = self.prepare(batch.target)
        bound = nll_bound(self.bfn, self.net, x, n_steps=self.n_steps, generator=g)
        self.log("val/nats", bound.nats.mean(), prog_bar=True, batch_size=x.shape[0])
        self.log("val/bits_per_dim", bound.nats.mean() / (bound.dims * 0.6931471805599453), batch_size=x.shape[0])

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "step"}}

    # ------------------------------------------------------------------ sampling
    def generate(
        self,
        num: int,
        *,
        generator: torch.Generator | None = None,
        labels: Tensor | None = None,
        x0: Tensor | None = None,
        method: str | None = None,
        steps: int | None = None,
        **options: Any,
    ) -> Tensor:
        """``num`` samples in the data's space (discrete classes as floats: binarized data as
        -1/+1 images, other classes as indices), with the sampler preset unless overridden."""
        if self.event_shape is None:
            raise ValueError("the sample shape is unknown: train or load the model from a checkpoint first")
        cfg = self.sampler_config
        method = method or cfg.method
        steps = steps or cfg.steps
        shape = (num, *self.event_shape)
        if method == "original":
            out = self.bfn.sample_original(self.net, shape, steps, generator=generator, dtype=self.dtype, device=self.device)
        else:
            out = self.bfn.sample(
                self.net, shape, steps, method, generator=generator, grid=cfg.grid, dtype=self.dtype, device=self.device,
                **{**cfg.options, **options},
            )
        if self.transform == "binarize":
            return out.x.to(self.dtype) * 2 - 1
        return out.x.to(self.dtype)

    def predict_step(self, batch: PredictBatch, batch_idx: int) -> Tensor:
        g = self.step_generator(_PREDICT, int(batch.index[0]))  # sync-ok: one CPU index per batch
        return self.generate(batch.index.shape[0], generator=g)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["flowbridge"] = {"event_shape": list(self.event_shape) if self.event_shape else None}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        shape = checkpoint.get("flowbridge", {}).get("event_shape")
        self.event_shape = tuple(shape) if shape else None
