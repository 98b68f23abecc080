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
