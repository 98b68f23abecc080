r"""Lightning modules for the bridge solvers that do not fit :class:`~flowbridge.training.GenerativeModule`.

SB-CFM *is* a ``GenerativeModule`` (Brownian-bridge interpolant + ``InterpolantObjective`` + a
Sinkhorn ``MinibatchOTCoupling``; see ``models/sbcfm_8gaussians_to_moons.yaml``). LightSB has no
network and no time, and DSBM alternates two networks over outer iterations, so they get their own
modules here, on :class:`~flowbridge.training.base.FlowbridgeModule` (random streams per rank and
step, automatic optimisation, checkpoints, ``generate``). Both train on the source/target batches of
a data-to-data DataModule (e.g. :class:`~flowbridge.training.PairedToy`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor

from flowbridge.bridges.dsbm import DSBM, bridge_matching_loss
from flowbridge.bridges.lightsb import LightSB, LightSBField
from flowbridge.errors import ArgumentError
from flowbridge.samplers import sample
from flowbridge.training.base import INIT, VAL, FlowbridgeModule, SamplerConfig
from flowbridge.training.data import DataError, DataSplits, GenerativeDataModule
from flowbridge.training.streams import DataBatch, derive_seed

__all__ = ["DSBMModule", "GaussianPairData", "LightSBModule"]


@dataclass
class BridgeSamplerConfig(SamplerConfig):
    """How a bridge module samples: ``solver="plan"`` (LightSB's closed-form plan) or a solver on the
    bridge's SDE (``bridge_euler_maruyama``), with ``steps``."""

    solver: str = "bridge_euler_maruyama"
    steps: int = 100

    extra_solvers: ClassVar[tuple[str, ...]] = ("plan",)


def _require_source(module: FlowbridgeModule, dm: Any) -> None:
    if not dm.has_source:
        raise DataError(f"{type(module).__name__} transports source data, but {dm.name} provides none (use PairedToy)")


class LightSBModule(FlowbridgeModule):
    """Trains :class:`~flowbridge.bridges.LightSB` from a data-to-data DataModule.

    Args:
        dim: data dimension.
        n_potentials: number of mixture components of the potential.
        eps: variance of the Brownian reference.
        covariance: ``"diagonal"`` or ``"full"``.
        init_scale: initial scale of the components' matrices.
        init_centres: initialise the centres at distinct training targets before fitting.
        optimizer: builds the optimizer (Adam, lr 1e-3, by default).
        lr_scheduler: builds an LR scheduler (stepped every optimizer step).
        sampler: ``solver="plan"`` (default) draws from the closed-form plan; ``bridge_euler_maruyama``
            simulates the closed-form SDE drift for ``steps`` steps.
        seed: seed of every per-step generator.
    """

    sampler_class = BridgeSamplerConfig

    def __init__(
        self, dim: int, n_potentials: int = 50, eps: float = 1.0, covariance: str = "diagonal", init_scale: float = 0.1,
        init_centres: bool = True, optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None, sampler: BridgeSamplerConfig | None = None, seed: int = 0,
    ) -> None:
        super().__init__(optimizer=optimizer, lr_scheduler=lr_scheduler, sampler=sampler, seed=seed)
        self.save_config()
        self.model = LightSB(dim, n_potentials, eps, covariance=covariance, init_scale=init_scale)
        self.init_centres = bool(init_centres)

    def default_sampler(self) -> SamplerConfig:
        return BridgeSamplerConfig(solver="plan")

    @property
    def transports_data(self) -> bool:
        return True

    def prepare_data_for(self, dm: Any, stage: str) -> None:
        _require_source(self, dm)
        if stage == "fit" and self.init_centres:
            g = torch.Generator().manual_seed(derive_seed(self.seed, INIT))
            self.model.init_from_target(dm.splits.train.to(self.model.r), generator=g)

    def field(self) -> LightSBField:
        """The closed-form SDE drift (``solver="bridge_euler_maruyama"``)."""
        return self.model.field()

    def training_loss(self, batch: DataBatch, generator: torch.Generator) -> Tensor:
        return self.model.loss(batch.source, batch.target)

    def validation_step(self, batch: DataBatch, batch_idx: int) -> None:
        self.log("val/loss", self.model.loss(batch.source, batch.target), prog_bar=True, batch_size=len(batch),
                 sync_dist=True)

    def draw(
        self, num: int, *, x0: Tensor | None, labels: Tensor | None, generator: Any, sampler: SamplerConfig,
        progress: bool, t_span: tuple[float, float] | None = None, batch_size: int | None = None,
    ) -> Tensor:
        assert x0 is not None
        x0 = x0.to(self.model.r)
        if sampler.solver == "plan":
            if t_span is not None or batch_size is not None:
                raise ArgumentError("the 'plan' sampler draws from the bridge's closed-form plan in one go: "
                                    "t_span and batch_size do not apply")
            return self.model.sample(x0, generator=generator)
        return sample(self.field(), sampler.solver, sampler.steps, x0=x0, generator=generator, grid=sampler.grid,
                      t_span=t_span, batch_size=batch_size, progress=progress, **sampler.options).x


class DSBMModule(FlowbridgeModule):
    """DSBM / IMF as a LightningModule: outer iteration ``k = step // steps_per_iteration``.

    At the first step of each outer iteration the module simulates ``cache_size`` coupled pairs
    with the network trained last (iteration 0: independent pairs of the training data), then trains
    the other direction on minibatches of that cache; the DataModule's batches only set the pace.
    Train for ``iterations * steps_per_iteration`` steps (``trainer.max_steps``). One optimizer holds
    both networks; a step's loss involves only the direction being trained, so the other network
    has no gradient and the optimizer leaves it (and its state) untouched.

    Args:
        dim: data dimension.
        sigma: bridge noise.
        hidden: width of the default networks.
        depth: depth of the default networks.
        steps_per_iteration: optimizer steps per outer iteration.
        cache_size: coupled pairs simulated per outer iteration.
        sde_steps: Euler–Maruyama steps of the simulations.
        batch_size: pairs per training step.
        t_max: training times are uniform on ``[0, t_max]``.
        optimizer: builds the optimizer of both networks (Adam, lr 1e-3, by default).
        lr_scheduler: builds an LR scheduler (stepped every optimizer step).
        sampler: how :meth:`generate` samples (``bridge_euler_maruyama`` on the forward SDE).
        seed: seed of every generator.
    """

    sampler_class = BridgeSamplerConfig

    def __init__(
        self, dim: int, sigma: float = 1.0, hidden: int = 128, depth: int = 3, steps_per_iteration: int = 1000,
        cache_size: int = 10_000, sde_steps: int = 100, batch_size: int = 256, t_max: float = 0.99,
        optimizer: OptimizerCallable = torch.optim.Adam, lr_scheduler: LRSchedulerCallable | None = None,
        sampler: BridgeSamplerConfig | None = None, seed: int = 0,
    ) -> None:
        super().__init__(optimizer=optimizer, lr_scheduler=lr_scheduler, sampler=sampler, seed=seed)
        self.save_config()
        for name, value in (("steps_per_iteration", steps_per_iteration), ("cache_size", cache_size),
                            ("sde_steps", sde_steps), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ArgumentError(f"{name} must be a positive integer; got {value!r}")
        if not 0.0 < t_max < 1.0:
            raise ArgumentError(f"t_max must lie in (0, 1); got {t_max!r}")
        if self.sampler_config.solver == "plan":
            raise ArgumentError("sampler.solver: DSBM has no closed-form plan; use bridge_euler_maruyama")
        self.dsbm = DSBM(dim, sigma, hidden=hidden, depth=depth)
        self.steps_per_iteration, self.cache_size, self.sde_steps = steps_per_iteration, cache_size, sde_steps
        self.pairs_per_step, self.t_max = batch_size, float(t_max)
        #: (source, target) pairs of the current outer iteration, rebuilt from its seed when missing.
        self.cache: tuple[Tensor, Tensor] | None = None
        self.cache_iteration = -1
        self.train_pairs: tuple[Tensor, Tensor] | None = None

    @property
    def transports_data(self) -> bool:
        return True

    def prepare_data_for(self, dm: Any, stage: str) -> None:
        _require_source(self, dm)
        self.train_pairs = (dm.splits.train_source, dm.splits.train)

    def direction(self, iteration: int) -> str:
        """``forward`` at even outer iterations, ``backward`` at odd ones."""
        return "forward" if iteration % 2 == 0 else "backward"

    def refresh_cache(self, iteration: int) -> None:
        """Simulates the coupled pairs of outer ``iteration`` (from its own seed, per rank)."""
        if self.train_pairs is None:
            raise DataError("DSBMModule needs a DataModule with source data (e.g. PairedToy)")
        x0, x1 = (d.to(self.device) for d in self.train_pairs)
        g = self.step_generator(INIT, iteration)
        i0 = torch.randint(x0.shape[0], (self.cache_size,), generator=g, device=g.device)
        i1 = torch.randint(x1.shape[0], (self.cache_size,), generator=g, device=g.device)
        direction = self.direction(iteration)
        with torch.no_grad():
            if iteration == 0:
                src, tgt = x0[i0], x1[i1]
            elif direction == "forward":
                tgt = x1[i1]
                src = self.dsbm.simulate(tgt, "backward", self.sde_steps, generator=g)
            else:
                src = x0[i0]
                tgt = self.dsbm.simulate(src, "forward", self.sde_steps, generator=g)
        self.cache = (src, tgt) if direction == "forward" else (tgt, src)
        self.cache_iteration = iteration

    def training_loss(self, batch: DataBatch, generator: torch.Generator) -> Tensor:
        iteration = self.global_step // self.steps_per_iteration
        direction = self.direction(iteration)
        if self.cache is None or self.cache_iteration != iteration:
            self.refresh_cache(iteration)
        assert self.cache is not None
        idx = torch.randint(self.cache_size, (self.pairs_per_step,), generator=generator, device=generator.device)
        start, end = self.cache[0][idx], self.cache[1][idx]
        field = self.dsbm.forward_field if direction == "forward" else self.dsbm.backward_field
        loss = bridge_matching_loss(field, start, end, t_max=self.t_max, generator=generator)
        self.dsbm.last_trained = direction
        self.log(f"train/{direction}_loss", loss, batch_size=self.pairs_per_step)
        return loss

    def flop_probe(self, batch: DataBatch, generator: torch.Generator) -> Any:
        assert batch.source is not None
        idx = torch.arange(min(self.pairs_per_step, len(batch)))
        return bridge_matching_loss(self.dsbm.forward_field, batch.source[idx], batch.target[idx], t_max=self.t_max,
                                    generator=generator)

    def validation_step(self, batch: DataBatch, batch_idx: int) -> None:
        g = self.step_generator(VAL, batch_idx)
        loss = bridge_matching_loss(self.dsbm.forward_field, batch.source, batch.target, t_max=self.t_max, generator=g)
        self.log("val/independent_bridge_loss", loss, batch_size=len(batch), sync_dist=True)

    def draw(
        self, num: int, *, x0: Tensor | None, labels: Tensor | None, generator: Any, sampler: SamplerConfig,
        progress: bool, t_span: tuple[float, float] | None = None, batch_size: int | None = None,
    ) -> Tensor:
        assert x0 is not None
        return sample(self.dsbm.forward_field, sampler.solver, sampler.steps, x0=x0, generator=generator,
                      grid=sampler.grid, t_span=t_span, batch_size=batch_size, progress=progress, **sampler.options).x


class GaussianPairData(GenerativeDataModule):
    r"""Unpaired samples of :math:`N(m\mathbf 1, I)` (source) and :math:`N(-m\mathbf 1, I)` (target) in ``dim``
    dimensions: DSBM's Gaussian test (``m = 0.1``, ``dim = 5``), whose exact bridge is
    :class:`~flowbridge.analytic.GaussianBridge`.

    Args:
        dim: dimension; shift: :math:`m`; n, val_size: rows of each set.
        batch_size, seed, predict_samples: see :class:`~flowbridge.training.GenerativeDataModule`.
    """

    def __init__(
        self, dim: int = 5, shift: float = 0.1, n: int = 20_000, val_size: int = 4000, batch_size: int = 256,
        seed: int = 0, predict_samples: int = 2000,
    ) -> None:
        super().__init__(batch_size, seed, predict_samples)
        self.save_hyperparameters()
        if not (isinstance(dim, int) and dim >= 1):
            raise ArgumentError(f"dim must be a positive integer; got {dim!r}")
        self.dim, self.shift, self.n, self.val_size = dim, float(shift), int(n), int(val_size)

    @property
    def name(self) -> str:
        return f"GaussianPairData(dim={self.dim}, shift={self.shift})"

    def load(self) -> DataSplits:
        def draw(n: int, sign: float, stream: int) -> Tensor:
            g = torch.Generator().manual_seed(derive_seed(self.seed, stream))
            return torch.randn(n, self.dim, generator=g) + sign * self.shift

        return DataSplits(
            train=draw(self.n, -1.0, 0), val=draw(self.val_size, -1.0, 1),
            train_source=draw(self.n, 1.0, 2), val_source=draw(self.val_size, 1.0, 3),
        )
