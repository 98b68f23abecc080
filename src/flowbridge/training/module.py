r"""``GenerativeModule``: one LightningModule for every trainable transport model.

A model is composed from a network (and a denoiser network for interpolants), a path (a
:class:`~flowbridge.paths.GaussianPath` or a :class:`~flowbridge.paths.StochasticInterpolant`), an
objective built on that path, a coupling of source and target, a distribution of training times,
an optimizer, an optional LR scheduler and an optional sampler preset. One training step is

.. math::
    x_1 \sim \text{data},\; x_0 \sim N(0, I)\ \text{(or source data)},\;
    (x_0, x_1) \leftarrow \text{coupling},\; t \sim \text{time sampler},\;
    L = \text{objective}(\text{field}, x_0, x_1, t).

Reproducibility: every random draw of step ``k`` on rank ``r`` comes from a generator seeded with
``(seed, r, k, batch_idx)`` alone, and the data order from ``(seed, epoch)``, so a run resumed from a
mid-epoch checkpoint retraces the uninterrupted run exactly, and DDP ranks draw independent streams
(:class:`~flowbridge.training.base.FlowbridgeModule`). Optimisation is Lightning's automatic
optimisation: gradient clipping, accumulation, mixed precision and every strategy apply unchanged.
EMA is a callback (:class:`~flowbridge.training.EMA` in the recipes, or Lightning's
``EMAWeightAveraging``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from flowbridge.couplings import Coupling, IndependentCoupling, PairedCoupling
from flowbridge.errors import ArgumentError
from flowbridge.fields import CFGField, Field, InterpolantField, NetworkField
from flowbridge.fields.edm import EDMPreconditioner
from flowbridge.objectives import InterpolantObjective, Objective
from flowbridge.paths.gaussian import GaussianPath, check_parametrisation
from flowbridge.paths.interpolant import StochasticInterpolant
from flowbridge.random import rand, randn_like
from flowbridge.samplers import sample
from flowbridge.training.base import VAL, FlowbridgeModule, SamplerConfig
from flowbridge.training.data import DataError
from flowbridge.training.streams import DataBatch
from flowbridge.training.time_samplers import TimeSampler, UniformTime

Path = GaussianPath | StochasticInterpolant

PRECONDITIONINGS = ("none", "edm")

__all__ = ["GenerativeModule", "SamplerConfig"]


class GenerativeModule(FlowbridgeModule):
    """Trains a field with an objective on a path; samples with a preset solver.

    Args:
        net: the network ``net(x, t[, y])`` (the drift network for interpolants).
        path: the path or interpolant connecting source (t=0) and target (t=1).
        objective: built as ``objective(path)``, e.g. the class ``FlowMatching``.
        parametrisation: what ``net`` predicts (``velocity``, ``data``, ``noise``, ``score``);
            ``data`` is implied by EDM preconditioning.
        denoiser: the denoiser network of a stochastic interpolant (enables its score / SDE sampling).
        coupling: how (x0, x1) are paired; independent by default.
        time_sampler: the distribution of training times; uniform on the path's interval by default.
        preconditioning: ``"none"`` or ``"edm"`` (wrap ``net`` in EDM's c_skip/c_out/c_in).
        sigma_data: the data standard deviation for EDM preconditioning.
        label_dropout: probability of replacing a class label by the null label (classifier-free
            guidance training); needs a class-conditional ``net``.
        optimizer: a callable building the optimizer from the parameters.
        lr_scheduler: an optional callable building an LR scheduler (stepped every optimizer step);
            :class:`~flowbridge.training.CosineLR` follows the run's length.
        sampler: the sampler preset for validation, predict and ``flowbridge sample``.
        seed: the seed of every per-step random stream.
    """

    def __init__(
        self,
        net: nn.Module,
        path: Path,
        objective: Callable[[Path], Objective],
        parametrisation: str = "velocity",
        denoiser: nn.Module | None = None,
        coupling: Coupling | None = None,
        time_sampler: TimeSampler | None = None,
        preconditioning: str = "none",
        sigma_data: float = 0.5,
        label_dropout: float = 0.0,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        sampler: SamplerConfig | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(optimizer=optimizer, lr_scheduler=lr_scheduler, sampler=sampler, seed=seed)
        self.save_config()
        if not isinstance(net, nn.Module):
            raise ArgumentError(f"net must be a torch.nn.Module; got {type(net).__name__}")
        if not isinstance(path, (GaussianPath, StochasticInterpolant)):
            raise ArgumentError(f"path must be a GaussianPath or a StochasticInterpolant; got {type(path).__name__}")
        if preconditioning not in PRECONDITIONINGS:
            raise ArgumentError(f"unknown preconditioning {preconditioning!r}; known: {', '.join(PRECONDITIONINGS)}")
        if not 0.0 <= label_dropout < 1.0:
            raise ArgumentError(f"label_dropout must lie in [0, 1); got {label_dropout}")
        check_parametrisation(parametrisation)
        self.path = path
        self.objective = objective(path)
        is_interpolant = isinstance(path, StochasticInterpolant)
        if is_interpolant != isinstance(self.objective, InterpolantObjective):
            raise ArgumentError(
                f"objective {type(self.objective).__name__} does not fit path {type(path).__name__}: a "
                "StochasticInterpolant trains with InterpolantObjective, a GaussianPath with FlowMatching or "
                "DenoisingScoreMatching"
            )
        if denoiser is not None and not is_interpolant:
            raise ArgumentError("denoiser is only used with a StochasticInterpolant path")
        if preconditioning == "edm":
            if is_interpolant:
                raise ArgumentError("preconditioning='edm' needs a GaussianPath")
            net = EDMPreconditioner(net, path, sigma_data)
            parametrisation = "data"
        self.net = net
        self.denoiser = denoiser
        self.parametrisation = parametrisation
        self.coupling = coupling if coupling is not None else IndependentCoupling()
        self.time_sampler = time_sampler if time_sampler is not None else UniformTime()
        self.label_dropout = float(label_dropout)
        if self.label_dropout > 0 and self.null_label is None:
            raise ArgumentError("label_dropout > 0 needs a class-conditional net (num_classes set)")

    # ------------------------------------------------------------------------------------------
    # what the model is
    # ------------------------------------------------------------------------------------------
    @property
    def null_label(self) -> int | None:
        """The net's null label (classifier-free guidance), or None if it is unconditional."""
        return getattr(self.net, "null_label", None)

    @property
    def num_classes(self) -> int | None:
        return self.null_label

    @property
    def transports_data(self) -> bool:
        return isinstance(self.path, StochasticInterpolant)

    def field(self, labels: Tensor | None = None) -> Field:
        """The trained field, conditioned on ``labels`` (None: unconditional / null label)."""
        condition = {} if labels is None else {"y": labels}
        if isinstance(self.path, StochasticInterpolant):
            return InterpolantField(self.net, self.denoiser, self.path, condition)
        return NetworkField(self.net, self.path, self.parametrisation, condition)

    def sampling_field(self, labels: Tensor | None, guidance: float) -> Field:
        """The field to sample: conditional, or classifier-free guided when ``guidance != 1``."""
        if labels is None or guidance == 1.0:
            return self.field(labels)
        if self.null_label is None:
            raise ArgumentError("classifier-free guidance needs a class-conditional net")
        null = torch.full_like(labels, self.null_label)
        return CFGField(self.field(labels), self.field(null), guidance)

    # ------------------------------------------------------------------------------------------
    # checks before training
    # ------------------------------------------------------------------------------------------
    def prepare_data_for(self, dm: Any, stage: str) -> None:
        name = getattr(dm, "name", type(dm).__name__)
        if isinstance(self.coupling, PairedCoupling) and not (dm.has_source and dm.paired):
            raise DataError(f"PairedCoupling needs paired source data, but {name} provides none")
        if isinstance(self.path, StochasticInterpolant) and not dm.has_source:
            raise DataError(f"a StochasticInterpolant transports source data, but {name} provides none (use PairedToy or TensorFile(source=...))")
        if dm.num_classes is not None and self.null_label is not None and dm.num_classes > self.null_label:
            raise DataError(f"{name} has {dm.num_classes} classes but the net was built with num_classes={self.null_label}")
        if self.null_label is not None and dm.num_classes is None:
            raise DataError(f"the net is class-conditional (num_classes={self.null_label}) but {name} has no labels")

    def check_data(self, dm: Any) -> None:
        name = getattr(dm, "name", type(dm).__name__)
        x = dm.reference(2)
        device = self.parameter_device()
        try:
            with torch.no_grad():
                out = self.field().predict(x.to(device, self.dtype), torch.full((2,), 0.5, device=device, dtype=self.dtype))
        except Exception as exc:
            raise DataError(
                f"the net does not accept samples of shape {tuple(x.shape[1:])} from {name}: {type(exc).__name__}: {exc}"
            ) from exc
        if out.shape != x.shape:
            raise DataError(f"the net maps samples of shape {tuple(x.shape[1:])} from {name} to {tuple(out.shape[1:])}")

    # ------------------------------------------------------------------------------------------
    # training
    # ------------------------------------------------------------------------------------------
    def drop_labels(self, labels: Tensor | None, generator: torch.Generator) -> Tensor | None:
        """Labels for the net: None for an unconditional net, some replaced by the null label."""
        if labels is None or self.null_label is None:
            return None
        if self.label_dropout == 0.0:
            return labels
        drop = rand(labels.shape, generator=generator, device=labels.device) < self.label_dropout
        return torch.where(drop, torch.full_like(labels, self.null_label), labels)

    def loss(self, batch: DataBatch, generator: torch.Generator) -> Any:
        """The objective's output on one batch, with all randomness from ``generator``."""
        x1 = batch.target
        x0 = batch.source if batch.source is not None else randn_like(x1, generator=generator)
        pair = self.coupling(x0, x1, generator=generator)
        t = self.time_sampler(x1.shape[0], self.path, generator=generator, device=x1.device, dtype=x1.dtype)
        labels = self.drop_labels(batch.label, generator)
        return self.objective(self.field(labels), pair.x0, pair.x1, t, generator=generator)

    def training_loss(self, batch: DataBatch, generator: torch.Generator) -> Tensor:
        return self.loss(batch, generator).loss

    def validation_step(self, batch: DataBatch, batch_idx: int) -> None:
        out = self.loss(batch, self.step_generator(VAL, batch_idx))
        self.log("val/loss", out.loss, prog_bar=True, sync_dist=True, batch_size=len(batch))

    # ------------------------------------------------------------------------------------------
    # sampling
    # ------------------------------------------------------------------------------------------
    def draw(
        self, num: int, *, x0: Tensor | None, labels: Tensor | None, generator: Any, sampler: SamplerConfig,
        progress: bool, t_span: tuple[float, float] | None = None, batch_size: int | None = None,
    ) -> Tensor:
        field_ = self.sampling_field(labels, float(sampler.guidance))
        out = sample(
            field_, sampler.solver, sampler.steps,
            shape=None if x0 is not None else (num, *self.event_shape), x0=x0,  # type: ignore[misc]
            generator=generator, grid=sampler.grid, t_span=t_span, batch_size=batch_size, progress=progress,
            dtype=self.dtype, device=self.device, **sampler.options,
        )
        return out.x
