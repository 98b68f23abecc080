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
mid-epoch checkpoint retraces the uninterrupted run exactly, and DDP ranks draw independent streams.
EMA is Lightning's :class:`~lightning.pytorch.callbacks.EMAWeightAveraging` callback (in the recipes).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from flowbridge.couplings import Coupling, IndependentCoupling, PairedCoupling
from flowbridge.fields import CFGField, Field, InterpolantField, NetworkField
from flowbridge.fields.edm import EDMPreconditioner
from flowbridge.objectives import InterpolantObjective, Objective
from flowbridge.paths.gaussian import GaussianPath, check_parametrisation
from flowbridge.paths.interpolant import StochasticInterpolant
from flowbridge.random import rand, randn_like
from flowbridge.samplers import SOLVERS, sample
from flowbridge.samplers.grids import GRIDS
from flowbridge.training.data import DataError
from flowbridge.training.streams import DataBatch, PredictBatch, derive_seed
from flowbridge.training.time_samplers import TimeSampler, UniformTime

Path = GaussianPath | StochasticInterpolant

# Stream identifiers mixed into the per-step seeds, so that training, validation and prediction
# never share random numbers.
_TRAIN, _VAL, _PREDICT = 0, 1, 2


@dataclass
class SamplerConfig:
    """A sampler preset: which solver, how many steps, which grid, solver options, CFG weight.

    ``samplers/*.yaml`` set it as ``model.sampler``; validation, ``predict`` and
    ``flowbridge sample`` use it.
    """

    solver: str = "heun"
    steps: int = 20
    grid: str = "uniform"
    options: dict[str, Any] = field(default_factory=dict)
    guidance: float = 1.0

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise ValueError(f"sampler.solver: unknown solver {self.solver!r}; known solvers: {', '.join(sorted(SOLVERS))}")
        if self.grid not in GRIDS:
            raise ValueError(f"sampler.grid: unknown grid {self.grid!r}; known grids: {', '.join(sorted(GRIDS))}")
        if not (isinstance(self.steps, int) and self.steps >= 1):
            raise ValueError(f"sampler.steps must be a positive integer; got {self.steps!r}")
        # Chained comparison: False for NaN and +-inf (a non-finite CFG weight gives NaN samples).
        if isinstance(self.guidance, bool) or not isinstance(self.guidance, (int, float)):
            raise TypeError(f"sampler.guidance must be a finite number; got {type(self.guidance).__name__}")
        if not float("-inf") < self.guidance < float("inf"):
            raise ValueError(f"sampler.guidance must be a finite number; got {self.guidance!r}")


PRECONDITIONINGS = ("none", "edm")


class _SharedOnCopy:
    """Holds a value that ``copy.deepcopy`` shares instead of copying.

    ``EMAWeightAveraging`` deep-copies the whole module; the optimizer and scheduler factories
    built by jsonargparse can reference the CLI (and, under DDP, its launcher's locks), and the
    averaged copy never builds an optimizer anyway.
    """

    def __init__(self, value: Any) -> None:
        self.value = value

    def __deepcopy__(self, memo: dict[int, Any]) -> "_SharedOnCopy":
        return self


class GenerativeModule(pl.LightningModule):
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
        lr_scheduler: an optional callable building an LR scheduler (stepped every step).
        sampler: the sampler preset for validation, predict and ``flowbridge sample``.
        seed: the seed of every per-step random stream.
        log_every_n_steps: how often the training loss is logged (logging every step costs time).
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
        log_every_n_steps: int = 50,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if not isinstance(path, (GaussianPath, StochasticInterpolant)):
            raise TypeError(f"path must be a GaussianPath or a StochasticInterpolant; got {type(path).__name__}")
        if preconditioning not in PRECONDITIONINGS:
            raise ValueError(f"unknown preconditioning {preconditioning!r}; known: {', '.join(PRECONDITIONINGS)}")
        if not 0.0 <= label_dropout < 1.0:
            raise ValueError(f"label_dropout must lie in [0, 1); got {label_dropout}")
        check_parametrisation(parametrisation)
        self.path = path
        self.objective = objective(path)
        is_interpolant = isinstance(path, StochasticInterpolant)
        if is_interpolant != isinstance(self.objective, InterpolantObjective):
            raise TypeError(
                f"objective {type(self.objective).__name__} does not fit path {type(path).__name__}: a "
                "StochasticInterpolant trains with InterpolantObjective, a GaussianPath with FlowMatching or "
                "DenoisingScoreMatching"
            )
        if denoiser is not None and not is_interpolant:
            raise TypeError("denoiser is only used with a StochasticInterpolant path")
        if preconditioning == "edm":
            if is_interpolant:
                raise TypeError("preconditioning='edm' needs a GaussianPath")
            net = EDMPreconditioner(net, path, sigma_data)
            parametrisation = "data"
        self.net = net
        self.denoiser = denoiser
        self.parametrisation = parametrisation
        self.coupling = coupling if coupling is not None else IndependentCoupling()
        self.time_sampler = time_sampler if time_sampler is not None else UniformTime()
        self.label_dropout = float(label_dropout)
        self._factories = _SharedOnCopy((optimizer, lr_scheduler))
        self.sampler_config = sampler if sampler is not None else SamplerConfig()
        self.seed, self.log_every_n_steps = int(seed), max(1, int(log_every_n_steps))
        if self.label_dropout > 0 and self.null_label is None:
            raise ValueError("label_dropout > 0 needs a class-conditional net (num_classes set)")
        # Set from the data at setup and stored in checkpoints (on_save_checkpoint).
        self.event_shape: tuple[int, ...] | None = None

    # ------------------------------------------------------------------------------------------
    # fields
    # ------------------------------------------------------------------------------------------
    @property
    def null_label(self) -> int | None:
        """The net's null label (classifier-free guidance), or None if it is unconditional."""
        return getattr(self.net, "null_label", None)

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
            raise ValueError("classifier-free guidance needs a class-conditional net")
        null = torch.full_like(labels, self.null_label)
        return CFGField(self.field(labels), self.field(null), guidance)

    # ------------------------------------------------------------------------------------------
    # checks before training
    # ------------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None or not hasattr(dm, "event_shape"):
            return
        dm.setup(stage)
        self.event_shape = tuple(dm.event_shape)
        self.check_data(dm)

    def check_data(self, dm: Any) -> None:
        """Stops before training when the data do not fit the model (one message naming both)."""
        name = getattr(dm, "name", type(dm).__name__)
        if isinstance(self.coupling, PairedCoupling) and not (dm.has_source and dm.paired):
            raise DataError(f"PairedCoupling needs paired source data, but {name} provides none")
        if isinstance(self.path, StochasticInterpolant) and not dm.has_source:
            raise DataError(f"a StochasticInterpolant transports source data, but {name} provides none (use PairedToy or TensorFile(source=...))")
        if dm.num_classes is not None and self.null_label is not None and dm.num_classes > self.null_label:
            raise DataError(f"{name} has {dm.num_classes} classes but the net was built with num_classes={self.null_label}")
        if self.null_label is not None and dm.num_classes is None:
            raise DataError(f"the net is class-conditional (num_classes={self.null_label}) but {name} has no labels")
        x = dm.reference(2)
        try:
            with torch.no_grad():
                out = self.field().predict(x.to(self.device, self.dtype), torch.full((2,), 0.5, device=self.device))
        except Exception as exc:
            raise DataError(
                f"the net does not accept samples of shape {tuple(x.shape[1:])} from {name}: {type(exc).__name__}: {exc}"
            ) from exc
        if out.shape != x.shape:
            raise DataError(f"the net maps samples of shape {tuple(x.shape[1:])} from {name} to {tuple(out.shape[1:])}")

    # ------------------------------------------------------------------------------------------
    # training
    # ------------------------------------------------------------------------------------------
    def step_generator(self, stream: int, *keys: int) -> torch.Generator:
        """The generator of one step: seeded from (seed, stream, rank, *keys) alone."""
        g = torch.Generator(device=self.device)
        g.manual_seed(derive_seed(self.seed, stream, self.global_rank, *keys))
        return g

    def drop_labels(self, labels: Tensor | None, generator: torch.Generator) -> Tensor | None:
        """Labels for the net: None for an unconditional net, some replaced by the null label."""
        if labels is None or self.null_label is None:
            return None
        if self.label_dropout == 0.0:
            return labels
        drop = rand(labels.shape, generator=generator, device=labels.device) < self.label_dropout
        return torch.where(drop, torch.full_like(labels, self.null_label), labels)

    def _training_field(self, labels: Tensor | None) -> Field:
        """One cached field whose conditioning is swapped per step.

        Building an ``nn.Module`` every step cost ~1 ms on the CPU (a quarter of a small MLP step);
        the cache lives in a plain dict so that it is not registered as a submodule twice.
        """
        cache = self.__dict__.setdefault("_field_cache", {})
        if cache.get("field") is None or cache.get("net") is not self.net:
            cache["field"], cache["net"] = self.field(), self.net
        f = cache["field"]
        f.condition = {} if labels is None else {"y": labels}
        return f

    def loss(self, batch: DataBatch, generator: torch.Generator) -> Any:
        """The objective's output on one batch, with all randomness from ``generator``."""
        x1 = batch.target
        x0 = batch.source if batch.source is not None else randn_like(x1, generator=generator)
        pair = self.coupling(x0, x1, generator=generator)
        t = self.time_sampler(x1.shape[0], self.path, generator=generator, device=x1.device, dtype=x1.dtype)
        labels = self.drop_labels(batch.label, generator)
        return self.objective(self._training_field(labels), pair.x0, pair.x1, t, generator=generator)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        # Lightning's generic walk over the batch costs ~0.5 ms per step; our batches know how to move.
        if isinstance(batch, DataBatch):
            return batch.to(device)
        if isinstance(batch, PredictBatch):
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    # ------------------------------------------------------------------------------------------
    # Lightning's fixed cost per step
    # ------------------------------------------------------------------------------------------
    # A small model's step takes a few ms on a CPU core, of which Lightning's loop cost ~1.3 ms
    # (experiments/bench_training.py). Four measures remove most of it without changing the
    # arithmetic of a step (the resume and DDP tests compare weights bit for bit):
    # * manual optimisation where the Trainer needs nothing automatic (no gradient clipping, no
    #   accumulation): it skips the closure, the precision plugin's wrappers and six hooks a step;
    # * a plain attribute write for ``_current_fx_name``, which Lightning sets twice around each of
    #   ~20 hooks a step and which nn.Module's generic ``__setattr__`` checks against
    #   Parameter/Module/Tensor types;
    # * the signature of ``training_step`` cached (Lightning inspects it every step);
    # * under single-device full precision, when no callback and no override of this module listens
    #   to the backward and optimizer-step hooks, the step calls ``backward`` and the optimizer
    #   directly: Lightning's strategy, precision plugin and the three hook dispatches around them
    #   would only forward the calls (tested to give bit-identical weights to the dispatched step).

    def on_train_start(self) -> None:
        self.__dict__["_direct_step"] = _dispatch_free_step(self)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
            return
        super().__setattr__(name, value)

    @property
    def automatic_optimization(self) -> bool:  # type: ignore[override]
        """False (``training_step`` steps the optimizer itself) unless the Trainer clips or accumulates.

        Setting it to False forces manual optimisation; the choice never changes the result of a step.
        """
        trainer = self._trainer
        if not self._automatic_optimization or trainer is None:
            return self._automatic_optimization
        return trainer.gradient_clip_val is not None or trainer.accumulate_grad_batches != 1

    @automatic_optimization.setter
    def automatic_optimization(self, value: bool) -> None:
        self._automatic_optimization = bool(value)

    def training_step(self, batch: DataBatch, batch_idx: int) -> Tensor:
        step = self.global_step  # a chain of Lightning properties: read once
        out = self.loss(batch, self.step_generator(_TRAIN, step, batch_idx))
        # self.log costs ~0.1 ms; at a few ms per step that is worth skipping on most steps.
        if step % self.log_every_n_steps == 0:
            self.log("train/loss", out.loss, prog_bar=True)
        if self.automatic_optimization:
            return out.loss
        optimizer = self.optimizers()
        if self.__dict__.get("_direct_step", False):
            # What manual_backward and LightningOptimizer.step reduce to here (see on_train_start),
            # bracketed by the callbacks through which the loop counts optimizer steps.
            optimizer._on_before_step()
            optimizer.optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.optimizer.step()
            optimizer._on_after_step()
        else:
            optimizer.zero_grad(set_to_none=True)
            self.manual_backward(out.loss)
            optimizer.step()
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()
        return out.loss.detach()

    training_step.__signature__ = inspect.signature(training_step)  # type: ignore[attr-defined]

    def validation_step(self, batch: DataBatch, batch_idx: int) -> None:
        out = self.loss(batch, self.step_generator(_VAL, batch_idx))
        self.log("val/loss", out.loss, prog_bar=True, sync_dist=True, batch_size=len(batch))

    def configure_optimizers(self) -> Any:
        optimizer_factory, scheduler_factory = self._factories.value
        optimizer = optimizer_factory(self.parameters())
        if scheduler_factory is None:
            return optimizer
        scheduler = scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------------------------------------
    # sampling
    # ------------------------------------------------------------------------------------------
    def generate(
        self,
        num: int,
        *,
        generator: torch.Generator | None = None,
        labels: Tensor | None = None,
        x0: Tensor | None = None,
        solver: str | None = None,
        steps: int | None = None,
        grid: str | None = None,
        guidance: float | None = None,
        progress: bool = False,
        **options: Any,
    ) -> Tensor:
        """Draws ``num`` samples with the sampler preset (any argument overrides it).

        Args:
            num: number of samples.
            generator: source of the initial noise and of stochastic solvers' noise.
            labels: (num,) class labels for a class-conditional net (None: unconditional).
            x0: (num, ...) source samples (required for a data-to-data interpolant).
            solver: override of :attr:`sampler_config`'s solver.
            steps: override of :attr:`sampler_config`'s steps.
            grid: override of :attr:`sampler_config`'s grid.
            guidance: override of :attr:`sampler_config`'s guidance.
            **options: overrides of :attr:`sampler_config`'s solver options.
            progress: show a progress bar.
        """
        cfg = self.sampler_config
        if self.event_shape is None and x0 is None:
            raise ValueError("the sample shape is unknown: train or load the model from a checkpoint first, or pass x0")
        if isinstance(self.path, StochasticInterpolant) and x0 is None:
            raise ValueError("this model transports source data: pass x0 (source samples)")
        w = cfg.guidance if guidance is None else float(guidance)
        if labels is not None:
            labels = labels.to(self.device)
        field_ = self.sampling_field(labels, w)
        out = sample(
            field_, solver or cfg.solver, steps or cfg.steps,
            shape=None if x0 is not None else (num, *self.event_shape), x0=None if x0 is None else x0.to(self.device, self.dtype),
            generator=generator, grid=grid or cfg.grid, progress=progress, dtype=self.dtype, device=self.device,
            **{**cfg.options, **options},
        )
        return out.x

    def predict_step(self, batch: PredictBatch, batch_idx: int) -> Tensor:
        index = batch.index
        g = self.step_generator(_PREDICT, int(index[0]))  # sync-ok: one CPU index per batch
        labels = index.to(self.device) % self.null_label if self.null_label is not None else None
        x0 = None
        dm = getattr(self.trainer, "datamodule", None)
        if isinstance(self.path, StochasticInterpolant):
            src = dm.source_reference()
            x0 = src[index % src.shape[0]]
        return self.generate(index.shape[0], generator=g, labels=labels, x0=x0)

    # ------------------------------------------------------------------------------------------
    # checkpoints
    # ------------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["flowbridge"] = {"event_shape": list(self.event_shape) if self.event_shape else None}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        shape = checkpoint.get("flowbridge", {}).get("event_shape")
        self.event_shape = tuple(shape) if shape else None


_STEP_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")


def _dispatch_free_step(module: GenerativeModule) -> bool:
    """Whether a manual step may skip Lightning's dispatch: nothing would run in it but the step.

    True under a single-device strategy with the plain full-precision plugin (mixed precision scales
    the loss; DDP, FSDP and DeepSpeed act around backward), with one optimizer, and when neither
    this module nor a callback overrides a hook that the dispatch would call.
    """
    from lightning.pytorch.plugins.precision import Precision
    from lightning.pytorch.strategies import SingleDeviceStrategy
    from lightning.pytorch.utilities.model_helpers import is_overridden

    trainer = module.trainer
    if type(trainer.strategy) is not SingleDeviceStrategy or type(trainer.precision_plugin) is not Precision:
        return False
    if len(trainer.optimizers) != 1:
        return False
    if any(is_overridden(hook, module, pl.LightningModule) for hook in (*_STEP_HOOKS, "backward")):
        return False
    return not any(is_overridden(hook, cb, pl.Callback) for cb in trainer.callbacks for hook in _STEP_HOOKS)
