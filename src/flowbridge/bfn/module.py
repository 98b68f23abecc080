"""``BFNModule``: trains and samples any BFN variant from a recipe (Lightning).

The continuous variant also trains inside :class:`~flowbridge.training.GenerativeModule` (its flow is
a Gaussian path; see :class:`~flowbridge.bfn.ContinuousBFNObjective`); the discretized and discrete
variants need this module, because their network sees the input distribution's parameters
(``2C`` output channels, or K-dim probability vectors per position) rather than a noised sample.

One training step: ``x ~ data`` (transformed: ``quantize`` to the bins, ``binarize``, or ``classes``),
``t ~ U[0, 1)``, loss = :math:`L^\\infty` or :math:`L^n` in nats per dimension. Validation logs the
likelihood bound on held-out data (``val/nats`` per datum, ``val/bits_per_dim``). Random streams,
optimisation, checkpoints and :meth:`~flowbridge.training.base.FlowbridgeModule.generate` come from
:class:`~flowbridge.training.base.FlowbridgeModule`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from flowbridge.bfn.continuous import ContinuousBFN
from flowbridge.bfn.discrete import DiscreteBFN
from flowbridge.bfn.discretized import DiscretizedBFN
from flowbridge.bfn.likelihood import nll_bound
from flowbridge.bfn.objective import BFNLoss
from flowbridge.errors import ArgumentError
from flowbridge.random import rand
from flowbridge.training.base import VAL, FlowbridgeModule, SamplerConfig
from flowbridge.training.data import DataError
from flowbridge.training.streams import DataBatch

TRANSFORMS: tuple[str, ...] = ("none", "quantize", "binarize", "classes")



@dataclass
class BFNSamplerConfig(SamplerConfig):
    """How a BFN is sampled: ``solver="original"`` (the paper's n-step sampler) or any registered
    Gaussian-path solver (``dpmpp_2m``, ``ddim``, ...) on the Bayesian flow, ``steps``, ``grid`` and
    solver options. ``method`` is the former name of ``solver`` (it wins when given)."""

    solver: str = "dpmpp_2m"
    steps: int = 20
    grid: str = "logsnr"
    method: str | None = None

    extra_solvers: ClassVar[tuple[str, ...]] = ("original",)

    def __post_init__(self) -> None:
        if self.method is not None:
            self.solver, self.method = self.method, None
        super().__post_init__()
        if self.guidance != 1.0:
            raise ArgumentError("sampler.guidance: BFN recipes are unconditional; guidance must be 1")


class BFNModule(FlowbridgeModule):
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
    """

    sampler_class = BFNSamplerConfig

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
    ) -> None:
        super().__init__(optimizer=optimizer, lr_scheduler=lr_scheduler, sampler=sampler, seed=seed)
        self.save_config()
        if transform not in TRANSFORMS:
            raise ArgumentError(f"transform must be one of {list(TRANSFORMS)}; got {transform!r}")
        if transform == "quantize" and not isinstance(bfn, DiscretizedBFN):
            raise ArgumentError("transform='quantize' needs a DiscretizedBFN (it maps data onto its bins)")
        if transform in ("binarize", "classes") and not isinstance(bfn, DiscreteBFN):
            raise ArgumentError(f"transform={transform!r} makes class indices and needs a DiscreteBFN")
        if transform == "binarize" and bfn.num_classes != 2:
            raise ArgumentError(f"transform='binarize' makes 2 classes; the DiscreteBFN has num_classes={bfn.num_classes}")
        self.net, self.bfn, self.n_steps, self.transform = net, bfn, n_steps, transform
        self.objective = BFNLoss(bfn, n_steps)

    @property
    def null_label(self) -> None:
        """BFN recipes are unconditional."""
        return None

    @property
    def accepts_x0(self) -> bool:
        return False  # sampling starts from the flow's fixed prior

    # ------------------------------------------------------------------ data
    def prepare(self, x: Tensor) -> Tensor:
        """A data batch as BFN data (see ``transform``)."""
        if self.transform == "quantize":
            return self.bfn.quantise(x)
        if self.transform == "binarize":
            return (x > 0).long()
        if self.transform == "classes":
            return torch.round(x).long()
        return x

    def as_model_space(self, x: Tensor) -> Tensor:
        """Held-out data as :meth:`generate` returns samples (binarized images as -1/+1)."""
        out = self.prepare(x)
        return out.to(x.dtype) * 2 - 1 if self.transform == "binarize" else out.to(x.dtype)

    def check_data(self, dm: Any) -> None:
        # Once, where the module runs: the transformed data must be valid BFN data and the
        # network must accept them (the training step itself does not re-validate).
        device = self.parameter_device()
        name = getattr(dm, "name", type(dm).__name__)
        x = self.prepare(dm.reference(2))
        try:
            self.bfn.check_data(x)  # the values, on the CPU
            x = x.to(device)
            with torch.no_grad():
                self.objective(self.net, x, torch.full((2,), 0.5, device=device))
        except (TypeError, ValueError, RuntimeError) as exc:
            raise DataError(f"{name} does not fit this BFN ({type(exc).__name__}: {exc})") from exc

    # ------------------------------------------------------------------ training
    def training_loss(self, batch: DataBatch, generator: torch.Generator) -> Tensor:
        x = self.prepare(batch.target)
        t = rand((x.shape[0],), generator=generator, device=x.device, dtype=torch.float32)
        return self.objective(self.net, x, t, generator=generator).loss

    def validation_step(self, batch: DataBatch, batch_idx: int) -> None:
        g = self.step_generator(VAL, batch_idx)
        x = self.prepare(batch.target)
        bound = nll_bound(self.bfn, self.net, x, n_steps=self.n_steps, generator=g)
        self.log("val/nats", bound.nats.mean(), prog_bar=True, batch_size=x.shape[0], sync_dist=True)
        self.log("val/bits_per_dim", bound.nats.mean() / (bound.dims * 0.6931471805599453), batch_size=x.shape[0],
                 sync_dist=True)

    # ------------------------------------------------------------------ sampling
    def generate(self, num: int, *, method: str | None = None, **kwargs: Any) -> Tensor:  # type: ignore[override]
        """:meth:`FlowbridgeModule.generate`; ``method`` is the former name of ``solver``.

        Samples are in the data's space: binarized data as -1/+1 images, other classes as indices
        (floats), discretized and continuous data as values.
        """
        if method is not None:
            if kwargs.get("solver") is not None:
                raise ArgumentError("pass solver or method (its former name), not both")
            kwargs["solver"] = method
        return super().generate(num, **kwargs)

    def draw(
        self, num: int, *, x0: Tensor | None, labels: Tensor | None, generator: Any, sampler: SamplerConfig,
        progress: bool, t_span: tuple[float, float] | None = None, batch_size: int | None = None,
    ) -> Tensor:
        shape = (num, *self.event_shape)  # type: ignore[misc]
        if sampler.solver == "original":
            if sampler.options:
                raise ArgumentError(f"the original BFN sampler takes no solver options; got {sorted(sampler.options)}")
            if t_span is not None or batch_size is not None:
                raise ArgumentError("the original BFN sampler runs its own schedule on the whole batch: "
                                    "t_span and batch_size do not apply")
            out = self.bfn.sample_original(self.net, sampler.steps, shape=shape, generator=generator, dtype=self.dtype,
                                           device=self.device)
        else:
            out = self.bfn.sample(
                self.net, sampler.solver, sampler.steps, shape=shape, generator=generator, grid=sampler.grid,
                t_span=t_span, batch_size=batch_size, progress=progress, dtype=self.dtype, device=self.device,
                **sampler.options,
            )
        if self.transform == "binarize":
            return out.x.to(self.dtype) * 2 - 1
        return out.x.to(self.dtype)
