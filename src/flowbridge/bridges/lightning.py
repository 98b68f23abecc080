r"""Lightning modules for the bridge solvers that do not fit :class:`~flowbridge.training.GenerativeModule`.

SB-CFM *is* a ``GenerativeModule`` (Brownian-bridge interpolant + ``InterpolantObjective`` + a
Sinkhorn ``MinibatchOTCoupling``; see ``models/sbcfm_8gaussians_to_moons.yaml``). LightSB has no
network and no time, and DSBM alternates two networks over outer iterations, so they get their own
modules here. Both train on the source/target batches of a data-to-data DataModule (e.g.
:class:`~flowbridge.training.PairedToy`) and draw every random number from generators seeded by
``(seed, step)`` alone.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from flowbridge.bridges.dsbm import DSBM, bridge_matching_loss
from flowbridge.bridges.lightsb import LightSB, LightSBField
from flowbridge.training.data import DataError, DataSplits, GenerativeDataModule
from flowbridge.training.streams import DataBatch, PredictBatch, derive_seed

__all__ = ["DSBMModule", "GaussianPairData", "LightSBModule"]

_TRAIN, _VAL, _PREDICT, _INIT = 0, 1, 2, 3


def _datamodule_with_source(module: pl.LightningModule) -> Any:
    dm = getattr(module.trainer, "datamodule", None) if module._trainer is not None else None
    if dm is None:
        return None
    dm.setup("fit")
    if not dm.has_source:
        raise DataError(f"{type(module).__name__} transports source data, but {dm.name} provides none (use PairedToy)")
    return dm


class LightSBModule(pl.LightningModule):
    """Trains :class:`~flowbridge.bridges.LightSB` from a data-to-data DataModule.

    Args:
        dim, n_potentials, eps, covariance, init_scale: see :class:`~flowbridge.bridges.LightSB`.
        lr: Adam learning rate.
        init_centres: initialise the centres at distinct training targets before fitting.
        seed: seed of the per-step generators.
    """

    def __init__(
        self, dim: int, n_potentials: int = 50, eps: float = 1.0, covariance: str = "diagonal", init_scale: float = 0.1,
        lr: float = 1e-3, init_centres: bool = True, seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = LightSB(dim, n_potentials, eps, covariance=covariance, init_scale=init_scale)
        self.lr, self.init_centres, self.seed = float(lr), bool(init_centres), int(seed)

    def setup(self, stage: str) -> None:
        dm = _datamodule_with_source(self)
        if dm is not None and stage == "fit" and self.init_centres:
            g = torch.Generator().manual_seed(derive_seed(self.seed, _INIT))
            self.model.init_from_target(dm.splits.train.to(self.model.r), generator=g)

    def field(self) -> LightSBField:
        """The closed-form SDE drift (``solver="bridge_euler_maruyama"``)."""
        return self.model.field()

    def training_step(self, batch: DataBatch, batch_idx: int) -> Tensor:
        loss = self.model.loss(batch.source, batch.target)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: DataBatch, batch_idx: int) -> None:
        self.log("val/loss", self.model.loss(batch.source, batch.target), prog_bar=True, batch_size=len(batch))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.model.parameters(), lr=self.lr)

    def generate(self, x0: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Targets for sources ``x0`` drawn from the closed-form plan."""
        return self.model.sample(x0.to(self.model.r), generator=generator)

    def predict_step(self, batch: PredictBatch, batch_idx: int) -> Tensor:
        g = torch.Generator().manual_seed(derive_seed(self.seed, _PREDICT, int(batch.index[0])))  # sync-ok: CPU index
        src = self.trainer.datamodule.source_reference()
        return self.generate(src[batch.index % src.shape[0]], generator=g)


class DSBMModule(pl.LightningModule):
    """DSBM / IMF as a LightningModule: outer iteration ``k = step // steps_per_iteration``.

    At the first step of each outer iteration the module simulates ``cache_size`` coupled pairs
    with the network trained last (iteration 0: independent pairs of the training data), then trains
    the other direction on minibatches of that cache; the DataModule's batches only set the pace.
    Train for ``iterations * steps_per_iteration`` steps (``trainer.max_steps``).

    Args:
        dim, sigma, hidden, depth: see :class:`~flowbridge.bridges.DSBM`.
        steps_per_iteration, cache_size, sde_steps, batch_size, t_max: see :meth:`DSBM.fit`.
        lr: Adam learning rate of both networks.
        seed: seed of every generator.
    """

    def __init__(
        self, dim: int, sigma: float = 1.0, hidden: int = 128, depth: int = 3, steps_per_iteration: int = 1000,
        cache_size: int = 10_000, sde_steps: int = 100, batch_size: int = 256, t_max: float = 0.99, lr: float = 1e-3,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.dsbm = DSBM(dim, sigma, hidden=hidden, depth=depth)
        self.steps_per_iteration, self.cache_size, self.sde_steps = int(steps_per_iteration), int(cache_size), int(sde_steps)
        self.pairs_per_step, self.t_max, self.lr, self.seed = int(batch_size), float(t_max), float(lr), int(seed)
        self._cache: tuple[Tensor, Tensor] | None = None
        self._data: tuple[Tensor, Tensor] | None = None

    def setup(self, stage: str) -> None:
        dm = _datamodule_with_source(self)
        if dm is not None:
            self._data = (dm.splits.train_source, dm.splits.train)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [
            torch.optim.Adam(self.dsbm.forward_field.parameters(), lr=self.lr),
            torch.optim.Adam(self.dsbm.backward_field.parameters(), lr=self.lr),
        ]

    def _refresh_cache(self, iteration: int, direction: str) -> None:
        if self._data is None:
            raise DataError("DSBMModule needs a DataModule with source data (e.g. PairedToy)")
        x0, x1 = (d.to(self.device) for d in self._data)
        g = torch.Generator().manual_seed(derive_seed(self.seed, _INIT, iteration))
        i0 = torch.randint(x0.shape[0], (self.cache_size,), generator=g).to(self.device)
        i1 = torch.randint(x1.shape[0], (self.cache_size,), generator=g).to(self.device)
        with torch.no_grad():
            if iteration == 0:
                src, tgt = x0[i0], x1[i1]
            elif direction == "forward":
                tgt = x1[i1]
                src = self.dsbm.simulate(tgt, "backward", self.sde_steps, generator=g)
            else:
                src = x0[i0]
                tgt = self.dsbm.simulate(src, "forward", self.sde_steps, generator=g)
        self._cache = (src, tgt) if direction == "forward" else (tgt, src)

    def training_step(self, batch: DataBatch, batch_idx: int) -> Tensor:
        step = self.global_step
        iteration = step // self.steps_per_iteration
        direction = "forward" if iteration % 2 == 0 else "backward"
        if step % self.steps_per_iteration == 0 or self._cache is None:
            self._refresh_cache(iteration, direction)
        assert self._cache is not None
        g = torch.Generator().manual_seed(derive_seed(self.seed, _TRAIN, step))
        idx = torch.randint(self.cache_size, (self.pairs_per_step,), generator=g).to(self.device)
        start, end = self._cache[0][idx], self._cache[1][idx]
        field = self.dsbm.forward_field if direction == "forward" else self.dsbm.backward_field
        opt = self.optimizers()[0 if direction == "forward" else 1]
        loss = bridge_matching_loss(field, start, end, t_max=self.t_max, generator=g)
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()
        self.dsbm.last_trained = direction
        self.log(f"train/{direction}_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: DataBatch, batch_idx: int) -> None:
        g = torch.Generator().manual_seed(derive_seed(self.seed, _VAL, batch_idx))
        loss = bridge_matching_loss(self.dsbm.forward_field, batch.source, batch.target, t_max=self.t_max, generator=g)
        self.log("val/independent_bridge_loss", loss, batch_size=len(batch))

    def generate(self, x0: Tensor, *, steps: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Targets for sources ``x0`` from the forward SDE."""
        return self.dsbm.sample(x0.to(self.device), steps or self.sde_steps, generator=generator)

    def predict_step(self, batch: PredictBatch, batch_idx: int) -> Tensor:
        g = torch.Generator().manual_seed(derive_seed(self.seed, _PREDICT, int(batch.index[0])))  # sync-ok: CPU index
        src = self.trainer.datamodule.source_reference()
        return self.generate(src[batch.index % src.shape[0]], generator=g)


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
            raise ValueError(f"dim must be a positive integer; got {dim!r}")
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


def main(args: list[str] | None = None) -> Any:
    """``python -m flowbridge.bridges.lightning fit --config models/lightsb_8gaussians_to_moons.yaml``.

    A LightningCLI in subclass mode, so that ``model.class_path`` may name :class:`LightSBModule` or
    :class:`DSBMModule` (the ``flowbridge`` command builds :class:`~flowbridge.training.GenerativeModule`).
    Returns the ``LightningCLI`` (its ``model`` is the trained module).
    """
    from lightning.pytorch.cli import LightningCLI

    return LightningCLI(
        pl.LightningModule, pl.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True, args=args,
        save_config_kwargs={"overwrite": True},
    )


if __name__ == "__main__":
    main()
