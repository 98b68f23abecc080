"""A callback for the DDP test: every rank writes its final weights (importable by the worker processes)."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch


class SaveRankWeights(pl.Callback):
    """Saves ``state_dict`` of the module on every rank to ``<folder>/rank<r>.pt`` at the end of fit."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        Path(self.folder).mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        torch.save({"state": state, "world_size": trainer.world_size, "step": trainer.global_step},
                   Path(self.folder) / f"rank{trainer.global_rank}.pt")


class RequestStopAt(pl.Callback):
    """Delivers SIGINT to the run's ``SaveOnInterrupt`` (on every rank) once ``global_step`` reaches ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        import signal

        from flowbridge.training.interrupt import SaveOnInterrupt

        if trainer.global_step >= self.step:
            handler = next(cb for cb in trainer.callbacks if isinstance(cb, SaveOnInterrupt))
            if handler.requested is None:
                handler.request(signal.SIGINT)


class SaveLR(pl.Callback):
    """Writes the final learning rate and step of rank 0 to ``<folder>/lr.pt``."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_rank == 0:
            Path(self.folder).mkdir(parents=True, exist_ok=True)
            torch.save({"lr": trainer.optimizers[0].param_groups[0]["lr"], "step": trainer.global_step}, Path(self.folder) / "lr.pt")
