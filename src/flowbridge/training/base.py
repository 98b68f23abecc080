r"""``FlowbridgeModule``: the small base every flowbridge LightningModule stands on.

What it gives each module (:class:`~flowbridge.training.GenerativeModule`,
:class:`~flowbridge.bfn.BFNModule`, :class:`~flowbridge.bridges.lightning.LightSBModule`,
:class:`~flowbridge.bridges.lightning.DSBMModule`):

* **Random streams.** Every random number of training step ``k`` on rank ``r`` comes from a generator
  seeded with ``(seed, stream, r, k, batch_idx)`` alone (:meth:`step_generator`), so a resumed run
  retraces the uninterrupted one, DDP ranks draw independent numbers, and training, validation and
  prediction never share numbers. Prediction seeds by sample index, not by rank, so sample ``i`` of
  ``flowbridge predict`` is the same on any number of devices.
* **Plain automatic optimisation** through Lightning's public API: ``training_step`` returns the
  loss of :meth:`training_loss`; the Trainer does backward, clipping, accumulation, mixed precision
  and the optimizer step, so every Trainer feature applies unchanged.
* **Optimizer and LR-schedule factories** (``optimizer=``, ``lr_scheduler=``), kept out of deep
  copies (``EMAWeightAveraging`` deep-copies the module). A schedule that is a
  :class:`~flowbridge.training.schedules.RunLengthSchedule` (e.g.
  :class:`~flowbridge.training.CosineLR`) is given the run's length, the Trainer's
  ``estimated_stepping_batches``, so a recipe shortened or lengthened with ``--trainer.max_steps``
  keeps a schedule that ends where the run ends.
* **A sampler preset** (``sampler=``, a :class:`SamplerConfig`) and one sampling entry point,
  :meth:`generate` ``(num, *, x0=None, labels=None, generator=None, seeds=None, **overrides)``, whose
  arguments are all honoured or refused with a message.
* **Checkpoints that load anywhere**: the configuration (not Python objects) as hyper-parameters,
  the sample shape in ``checkpoint["flowbridge"]``; :func:`flowbridge.load` rebuilds any module.
* **Pre-flight checks where the module runs**: :meth:`check_data` runs at ``on_fit_start``, after
  the strategy has moved the parameters, on the parameters' own device.
"""

from __future__ import annotations

import dataclasses
import inspect
import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from flowbridge.errors import ArgumentError
from flowbridge.random import StackedGenerators, noise_source
from flowbridge.samplers import SOLVERS
from flowbridge.samplers.grids import GRIDS, explicit_grid
from flowbridge.training.streams import DataBatch, PredictBatch, derive_seed

# Stream identifiers mixed into the per-step seeds, so that training, validation, prediction and
# initialisation never share random numbers.
TRAIN, VAL, PREDICT, INIT = 0, 1, 2, 3


@dataclass
class SamplerConfig:
    """A sampler preset: which solver, how many steps, which grid, solver options, CFG weight.

    ``samplers/*.yaml`` set it as ``model.sampler``; validation, ``predict``, :meth:`FlowbridgeModule.generate`
    and ``flowbridge sample`` use it.

    Args:
        solver: a registered solver name (``flowbridge.SOLVERS``).
        steps: number of solver steps.
        grid: a registered time grid (``uniform``, ``quadratic``, ``logsnr``, ``karras``), or
            ``steps + 1`` explicit times (a tuned grid: :func:`flowbridge.samplers.tuning.tune`).
        options: solver options (keyword arguments of the solver).
        guidance: classifier-free guidance weight (1: no guidance).
    """

    solver: str = "heun"
    steps: int = 20
    grid: str | list[float] = "uniform"
    options: dict[str, Any] = field(default_factory=dict)
    guidance: float = 1.0

    #: Sampling methods a module offers besides the registered solvers (e.g. BFN's ``"original"``).
    extra_solvers: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS and self.solver not in self.extra_solvers:
            known = sorted(SOLVERS) + list(self.extra_solvers)
            raise ArgumentError(f"sampler.solver: unknown solver {self.solver!r}; known solvers: {', '.join(known)}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ArgumentError(f"sampler.steps must be a positive integer; got {self.steps!r}")
        if isinstance(self.grid, str):
            if self.grid not in GRIDS:
                raise ArgumentError(f"sampler.grid: unknown grid {self.grid!r}; known grids: {', '.join(sorted(GRIDS))}")
        else:
            # Explicit times stay plain floats (configuration data for checkpoints and YAML), checked here
            # so that a --steps that disagrees with them fails before sampling.
            try:
                self.grid = explicit_grid(self.grid, self.steps).tolist()
            except ArgumentError as exc:
                raise ArgumentError(f"sampler.grid: {exc}") from None
        if not isinstance(self.options, dict):
            raise ArgumentError(f"sampler.options must be a mapping of solver options; got {type(self.options).__name__}")
        # Chained comparison: False for NaN and +-inf (a non-finite CFG weight gives NaN samples).
        if isinstance(self.guidance, bool) or not isinstance(self.guidance, (int, float)):
            raise ArgumentError(f"sampler.guidance must be a finite number; got {type(self.guidance).__name__}")
        if not float("-inf") < self.guidance < float("inf"):
            raise ArgumentError(f"sampler.guidance must be a finite number; got {self.guidance!r}")

    def replace(self, **changes: Any) -> "SamplerConfig":
        """A copy with the non-None ``changes`` applied (and validated).

        ``options`` are merged over the preset's while the solver stays the same; a different
        ``solver`` starts from no options (they are the keyword arguments of the solver they were
        written for: DPM-Solver++'s ``final_step`` is not an option of Euler's).
        """
        changes = {k: v for k, v in changes.items() if v is not None}
        new_solver = "solver" in changes and changes["solver"] != self.solver
        if "options" in changes or new_solver:
            changes["options"] = {**({} if new_solver else self.options), **changes.get("options", {})}
        return dataclasses.replace(self, **changes) if changes else self


class SharedOnCopy:
    """Holds a value that ``copy.deepcopy`` shares instead of copying.

    Weight-averaging callbacks deep-copy the whole module; the optimizer and scheduler factories
    built by jsonargparse can reference the CLI (and, under DDP, its launcher's locks), and the
    averaged copy never builds an optimizer anyway.
    """

    def __init__(self, value: Any) -> None:
        self.value = value

    def __deepcopy__(self, memo: dict[int, Any]) -> "SharedOnCopy":
        return self


def _plain(value: Any) -> bool:
    """Whether ``value`` is configuration data (what a ``weights_only`` checkpoint can hold)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _seed(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ArgumentError(f"seed must be an integer; got {value!r}")
    return int(value)


class FlowbridgeModule(pl.LightningModule):
    """Base class of flowbridge's LightningModules (see the module docstring for what it provides).

    Subclasses call ``super().__init__(optimizer=..., lr_scheduler=..., sampler=..., seed=...)`` and
    then :meth:`save_config`, and implement :meth:`training_loss` and :meth:`draw`; they may
    override :meth:`check_data`, :attr:`num_classes` and :attr:`transports_data`.

    Args:
        optimizer: builds the optimizer from the parameters (a class such as ``torch.optim.Adam``
            or a jsonargparse factory).
        lr_scheduler: builds an LR scheduler from the optimizer; stepped after every optimizer step.
        sampler: the sampler preset (``None``: the class's default :attr:`sampler_class` ``()``).
        seed: the seed of every per-step random stream.
    """

    #: The preset type ``sampler`` must have.
    sampler_class: ClassVar[type[SamplerConfig]] = SamplerConfig

    def __init__(
        self,
        *,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        sampler: SamplerConfig | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not callable(optimizer):
            raise ArgumentError(f"optimizer must build an optimizer from the parameters; got {type(optimizer).__name__}")
        if lr_scheduler is not None and not callable(lr_scheduler):
            raise ArgumentError(f"lr_scheduler must build a scheduler from the optimizer; got {type(lr_scheduler).__name__}")
        if sampler is None:
            sampler = self.default_sampler()
        if not isinstance(sampler, self.sampler_class):
            raise ArgumentError(f"sampler must be a {self.sampler_class.__name__}; got {type(sampler).__name__}")
        self.seed = _seed(seed)
        self.factories = SharedOnCopy((optimizer, lr_scheduler))
        self.sampler_config = sampler
        #: The shape of one sample; set from the data at setup and stored in checkpoints.
        self.event_shape: tuple[int, ...] | None = None

    def default_sampler(self) -> SamplerConfig:
        """The preset used when ``sampler`` is not given."""
        return self.sampler_class()

    def save_config(self) -> None:
        """``save_hyperparameters`` of the caller's ``__init__``, without the per-argument warning
        for networks: under the CLI the stored values are the configuration, and a module built in
        Python keeps its objects out of the checkpoint (see :meth:`on_save_checkpoint`)."""
        frame = inspect.currentframe()
        caller = frame.f_back if frame is not None else None
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Attribute '.*' is an instance of `nn.Module`")
            # logger=False: the CLI saves the whole configuration (config.yaml); logging the module's
            # hyper-parameters too makes Lightning refuse a run whose model.seed and data.seed differ.
            self.save_hyperparameters(frame=caller, logger=False)

    # ------------------------------------------------------------------------------------------
    # what subclasses describe
    # ------------------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int | None:
        """Number of classes of a class-conditional model (``labels`` in ``[0, num_classes)``), else None."""
        return None

    @property
    def transports_data(self) -> bool:
        """Whether the model maps source *data* to target data (``generate`` then needs ``x0``)."""
        return False

    @property
    def accepts_x0(self) -> bool:
        """Whether :meth:`generate` accepts initial states ``x0`` (noise or source data)."""
        return True

    def training_loss(self, batch: DataBatch, generator: torch.Generator) -> Tensor:
        """The scalar loss of one batch, every random number drawn from ``generator``."""
        raise NotImplementedError

    def draw(
        self, num: int, *, x0: Tensor | None, labels: Tensor | None, generator: Any, sampler: SamplerConfig,
        progress: bool, t_span: tuple[float, float] | None = None, batch_size: int | None = None,
    ) -> Tensor:
        """Draws ``num`` samples with the (validated) preset ``sampler``; see :meth:`generate`.

        ``t_span`` and ``batch_size`` are the sampling vocabulary's (``docs/architecture.md``); a
        method that cannot honour one raises :class:`~flowbridge.errors.ArgumentError`.
        """
        raise NotImplementedError

    def flop_probe(self, batch: DataBatch, generator: torch.Generator) -> Any:
        """The work of one training step's forward pass (counted to choose CPU threads); the loss here."""
        return self.training_loss(batch, generator)

    def as_model_space(self, x: Tensor) -> Tensor:
        """Held-out data as the model generates them (e.g. binarized for a binary BFN); identity here."""
        return x

    # ------------------------------------------------------------------------------------------
    # data checks
    # ------------------------------------------------------------------------------------------
    def attached_datamodule(self) -> Any:
        """The Trainer's data module, or None (no Trainer, or data given as loaders)."""
        try:
            trainer = self.trainer
        except RuntimeError:  # not attached to a Trainer
            return None
        return getattr(trainer, "datamodule", None)

    def setup(self, stage: str) -> None:
        dm = self.attached_datamodule()
        if dm is None or not hasattr(dm, "event_shape"):
            return
        dm.setup(stage)
        self.event_shape = tuple(dm.event_shape)
        self.prepare_data_for(dm, stage)

    def prepare_data_for(self, dm: Any, stage: str) -> None:
        """Device-free checks and preparations from the data at setup (before the model is moved)."""

    def on_fit_start(self) -> None:
        dm = self.attached_datamodule()
        if dm is not None and hasattr(dm, "event_shape"):
            self.check_data(dm)

    def check_data(self, dm: Any) -> None:
        """Stops before training when the data do not fit the model (one message naming both).

        Runs at ``on_fit_start``, after the strategy moved the parameters; any tensor built here
        goes to :meth:`parameter_device`, never to a device the parameters are not on yet.
        """

    def parameter_device(self) -> torch.device:
        """Where the parameters are (``self.device`` names the target device before they are moved)."""
        for p in self.parameters():
            return p.device
        return self.device

    # ------------------------------------------------------------------------------------------
    # random streams
    # ------------------------------------------------------------------------------------------
    def step_generator(self, stream: int, *keys: int) -> torch.Generator:
        """The generator of one step: seeded from ``(seed, stream, rank, *keys)`` alone."""
        g = torch.Generator(device=self.device)
        g.manual_seed(derive_seed(self.seed, stream, self.global_rank, *keys))
        return g

    def index_generator(self, stream: int, *keys: int) -> torch.Generator:
        """A generator seeded from ``(seed, stream, *keys)``, the same on every rank."""
        g = torch.Generator(device=self.device)
        g.manual_seed(derive_seed(self.seed, stream, *keys))
        return g

    # ------------------------------------------------------------------------------------------
    # training
    # ------------------------------------------------------------------------------------------
    def on_train_start(self) -> None:
        # Lightning skips on_train_epoch_start when it resumes in the middle of an epoch, so a
        # GradientAccumulationScheduler would accumulate with the Trainer's default factor until the
        # epoch ends (measured: the resumed run stepped after every batch); set this epoch's factor.
        from lightning.pytorch.callbacks import GradientAccumulationScheduler

        trainer = self.trainer
        for cb in trainer.callbacks:
            if isinstance(cb, GradientAccumulationScheduler):
                trainer.accumulate_grad_batches = cb.get_accumulate_grad_batches(trainer.current_epoch)

    def training_step(self, batch: DataBatch, batch_idx: int) -> Tensor:
        loss = self.training_loss(batch, self.step_generator(TRAIN, self.global_step, batch_idx))
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch))
        return loss

    def configure_optimizers(self) -> Any:
        from flowbridge.training.schedules import RunLengthSchedule

        optimizer_factory, scheduler_factory = self.factories.value
        optimizer = optimizer_factory(self.parameters())
        if scheduler_factory is None:
            return optimizer
        scheduler = scheduler_factory(optimizer)
        total = self.trainer.estimated_stepping_batches
        if isinstance(scheduler, RunLengthSchedule):
            if scheduler.total_steps is None:
                if not 0 < total < float("inf"):
                    raise ArgumentError(f"{type(scheduler).__name__} follows the run's length, but the run has no finite length; "
                                     "set trainer.max_steps (or total_steps)")
                scheduler.set_total_steps(int(total))
        else:
            t_max = getattr(scheduler, "T_max", None)
            if isinstance(t_max, int) and 0 < total < float("inf") and t_max != int(total):
                rank_zero_warn(
                    f"lr_scheduler {type(scheduler).__name__} has T_max={t_max} but the run has {int(total)} optimizer steps: "
                    "the schedule will not end where the run ends. Use flowbridge.training.CosineLR, which follows "
                    "trainer.max_steps."
                )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------------------------------------
    # sampling
    # ------------------------------------------------------------------------------------------
    def generate(
        self,
        num: int,
        *,
        x0: Tensor | None = None,
        labels: Tensor | None = None,
        generator: torch.Generator | None = None,
        seeds: Sequence[int] | None = None,
        seed: int | None = None,
        solver: str | None = None,
        steps: int | None = None,
        grid: str | None = None,
        t_span: tuple[float, float] | None = None,
        batch_size: int | None = None,
        guidance: float | None = None,
        progress: bool = False,
        **options: Any,
    ) -> Tensor:
        """Draws ``num`` samples with the sampler preset; every argument is honoured or refused.

        Args:
            num: number of samples.
            x0: (num, ...) initial states: source data for a data-to-data model (required there),
                initial noise otherwise (refused by models that start from a fixed prior).
            labels: (num,) integer classes in ``[0, num_classes)`` for a class-conditional model
                (refused by unconditional models).
            generator: the source of all random numbers (one stream; not with ``seeds`` or ``seed``).
            seeds: one seed per sample (sample ``i`` then does not depend on the batch it is in).
            seed: per-sample streams derived from one integer (``flowbridge.random.index_seeds``):
                sample ``i`` depends only on ``seed`` and ``i``, whatever ``batch_size``.
            solver: override of the preset's solver.
            steps: override of the preset's steps.
            grid: override of the preset's grid.
            t_span: ``(t0, t1)`` to integrate over (default: the solver's ``default_span``).
            batch_size: draw in chunks of at most this many samples (labels are split with them).
            guidance: override of the preset's classifier-free guidance weight (conditional models).
            progress: show a progress bar.
            **options: overrides of the preset's solver options.

        Returns:
            (num, *event_shape) samples on the module's device.
        """
        if isinstance(num, bool) or not isinstance(num, numbers.Integral) or num < 1:
            raise ArgumentError(f"num must be a positive integer; got {num!r}")
        num = int(num)
        name = type(self).__name__
        source: Any = generator
        if seed is not None:
            if generator is not None or seeds is not None:
                raise ArgumentError("pass at most one of generator, seeds and seed")
            source = noise_source(seed=seed, batch=num)
        elif seeds is not None:
            if generator is not None:
                raise ArgumentError("pass generator or seeds, not both")
            seeds = list(seeds)
            if len(seeds) != num:
                raise ArgumentError(f"seeds has {len(seeds)} entries for num={num} samples; give one seed per sample")
            source = StackedGenerators(seeds)
        elif generator is not None and not isinstance(generator, torch.Generator):
            raise ArgumentError(f"generator must be a torch.Generator; got {type(generator).__name__}")
        if x0 is not None:
            if not self.accepts_x0:
                raise ArgumentError(f"{name} samples from its fixed prior; x0 is not supported")
            if not isinstance(x0, Tensor) or not x0.is_floating_point() or x0.ndim < 2 or x0.shape[0] != num:
                got = f"shape {tuple(x0.shape)} {x0.dtype}" if isinstance(x0, Tensor) else type(x0).__name__
                raise ArgumentError(f"x0 must be a floating-point tensor of shape (num={num}, ...); got {got}")
            x0 = x0.to(self.device, self.dtype)
        elif self.transports_data:
            raise ArgumentError(f"{name} transports source data: pass x0, a ({num}, ...) tensor of source samples")
        elif self.event_shape is None:
            raise ArgumentError("the sample shape is unknown: train or load the model from a checkpoint first, or pass x0")
        if labels is not None:
            classes = self.num_classes
            if classes is None:
                raise ArgumentError(f"{name} is unconditional: labels must be None")
            if not isinstance(labels, Tensor) or labels.is_floating_point() or labels.dtype == torch.bool or labels.shape != (num,):
                got = f"shape {tuple(labels.shape)} {labels.dtype}" if isinstance(labels, Tensor) else type(labels).__name__
                raise ArgumentError(f"labels must be an integer tensor of shape ({num},); got {got}")
            lo, hi = int(labels.min()), int(labels.max())  # sync-ok: validation, once per call
            if lo < 0 or hi >= classes:
                raise ArgumentError(f"labels must lie in [0, {classes}); got values in [{lo}, {hi}]")
            labels = labels.to(self.device, torch.long)
        if guidance is not None and self.num_classes is None:
            raise ArgumentError(f"{name} is unconditional: guidance does not apply")
        try:
            sampler = self.sampler_config.replace(solver=solver, steps=steps, grid=grid, guidance=guidance,
                                                  options=options or None)
        except (TypeError, ValueError) as exc:
            raise ArgumentError(str(exc)) from None
        if t_span is not None:
            try:
                t0, t1 = (float(t) for t in t_span)
            except (TypeError, ValueError):
                raise ArgumentError(f"t_span must be a pair of times (t0, t1); got {t_span!r}") from None
            if not 0.0 <= t0 < t1 <= 1.0:
                raise ArgumentError(f"t_span must satisfy 0 <= t0 < t1 <= 1; got {t_span!r}")
            t_span = (t0, t1)
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral)
                                       or batch_size < 1):
            raise ArgumentError(f"batch_size must be a positive integer; got {batch_size!r}")
        return self.draw(num, x0=x0, labels=labels, generator=source, sampler=sampler, progress=bool(progress),
                         t_span=t_span, batch_size=None if batch_size is None else int(batch_size))

    def predict_step(self, batch: PredictBatch, batch_idx: int) -> Tensor:
        index = batch.index.cpu()
        # One generator per block of indices, seeded by the block's first index: the same samples on
        # any number of ranks.
        g = self.index_generator(PREDICT, int(index[0]))
        labels = index % self.num_classes if self.num_classes is not None else None
        x0 = None
        if self.transports_data:
            src = self.trainer.datamodule.source_reference()
            x0 = src[index % src.shape[0]]
        return self.generate(index.shape[0], x0=x0, labels=labels, generator=g)

    # ------------------------------------------------------------------------------------------
    # checkpoints
    # ------------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        from flowbridge import __version__

        hparams = checkpoint.get("hyper_parameters")
        dropped: list[str] = []
        if isinstance(hparams, dict):
            # A module built in Python holds objects (networks, paths, classes) as hyper-parameters;
            # they would make the checkpoint unloadable with weights_only=True. Under the CLI the
            # values are the configuration and nothing is dropped.
            dropped = sorted(k for k, v in hparams.items() if not _plain(v))
            for k in dropped:
                del hparams[k]
        checkpoint["flowbridge"] = {
            "event_shape": list(self.event_shape) if self.event_shape else None,
            "version": __version__,
            "module": f"{type(self).__module__}.{type(self).__qualname__}",
            "missing_arguments": dropped,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        info = checkpoint.get("flowbridge", {}) or {}
        shape = info.get("event_shape")
        self.event_shape = tuple(shape) if shape else None
        # Loaded through the checkpoint's configuration, the module holds objects where the
        # checkpoint holds their configuration: keep the configuration, so that a checkpoint saved
        # again from this module loads as well.
        saved = checkpoint.get("hyper_parameters") or {}
        for key, value in saved.items():
            if key in self.hparams and not _plain(self.hparams[key]) and _plain(value):
                self.hparams[key] = value


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (for summaries)."""
    return sum(p.numel() for p in module.parameters())
