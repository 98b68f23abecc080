"""Callbacks: sample plots and sample-quality metrics during training.

Both sample at the first validation batch (``on_validation_batch_start``), by which time Lightning's
``EMAWeightAveraging`` has swapped the averaged weights in, so they judge the EMA model whatever the
order of the callbacks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from flowbridge.metrics import mmd, sliced_wasserstein


def _samples(pl_module: Any, dm: Any, num: int, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``num`` samples from the module with a fixed seed (labels cycle through the classes)."""
    g = torch.Generator(device=pl_module.device).manual_seed(seed)
    labels = None
    if pl_module.null_label is not None:
        labels = torch.arange(num, device=pl_module.device) % pl_module.null_label
    x0 = None
    src = dm.source_reference() if hasattr(dm, "source_reference") else None
    if src is not None:
        x0 = src[torch.arange(num) % src.shape[0]]
    with torch.no_grad():
        return pl_module.generate(num, generator=g, labels=labels, x0=x0), labels


def _log_dir(trainer: pl.Trainer) -> Path:
    return Path(trainer.log_dir or trainer.default_root_dir)


class SamplePlot(pl.Callback):
    """Writes a PNG of samples (2-D scatter over held-out data, or an image grid) every N epochs.

    Args:
        every_n_epochs: plot at validation of every ``every_n_epochs``-th epoch.
        num_samples: points (2-D) or images to draw.
        seed: seed of the plotted samples (fixed, so plots are comparable across epochs).
    """

    def __init__(self, every_n_epochs: int = 1, num_samples: int = 2000, seed: int = 0) -> None:
        if every_n_epochs < 1 or num_samples < 1:
            raise ValueError(f"every_n_epochs and num_samples must be positive; got {every_n_epochs}, {num_samples}")
        self.every_n_epochs, self.num_samples, self.seed = every_n_epochs, num_samples, seed
        self.last_path: Path | None = None

    def on_validation_batch_start(
        self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if batch_idx != 0 or trainer.sanity_checking or not trainer.is_global_zero:
            return
        # Epochs count from 1 here, as in Lightning's check_val_every_n_epoch (which validates after
        # epochs n-1, 2n-1, ... in 0-based current_epoch), so equal settings coincide.
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        from flowbridge import viz

        dm = trainer.datamodule
        x, _ = _samples(pl_module, dm, self.num_samples, self.seed)
        x = x.detach().cpu().float()
        if x.ndim == 2 and x.shape[1] == 2:
            fig = viz.plot_samples(x, dm.reference().cpu(), title=f"step {trainer.global_step}")
        elif x.ndim == 4:
            fig = viz.image_grid(x[: min(100, x.shape[0])], nrow=10, title=f"step {trainer.global_step}")
        else:
            return
        path = _log_dir(trainer) / "samples" / f"step{trainer.global_step:07d}.png"
        self.last_path = viz.save_figure(fig, path)


class SampleMetrics(pl.Callback):
    """Logs sliced Wasserstein and MMD between model samples and held-out data at validation.

    Logged as ``val/sliced_w`` and ``val/mmd``; compare with the data's own noise floor (two
    held-out sets of the same size), which ``flowbridge.metrics.noise_floor`` measures.

    Args:
        num_samples: samples per comparison (capped by the held-out set's size).
        every_n_epochs: measure at every ``every_n_epochs``-th validation.
        seed: seed of the samples and of the projections.
    """

    def __init__(self, num_samples: int = 2000, every_n_epochs: int = 1, seed: int = 0) -> None:
        if num_samples < 2 or every_n_epochs < 1:
            raise ValueError(f"need num_samples >= 2 and every_n_epochs >= 1; got {num_samples}, {every_n_epochs}")
        self.num_samples, self.every_n_epochs, self.seed = num_samples, every_n_epochs, seed
        self.last: dict[str, float] = {}

    def on_validation_batch_start(
        self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if batch_idx != 0 or trainer.sanity_checking or trainer.current_epoch % self.every_n_epochs:
            return
        dm = trainer.datamodule
        ref = dm.reference(self.num_samples).to(pl_module.device)
        x, _ = _samples(pl_module, dm, ref.shape[0], self.seed)
        g = torch.Generator().manual_seed(self.seed)
        flat_x, flat_ref = x.reshape(x.shape[0], -1).float(), ref.reshape(ref.shape[0], -1).float()
        sw = sliced_wasserstein(flat_x, flat_ref, generator=g)
        m = mmd(flat_x, flat_ref)
        self.last = {"sliced_w": float(sw), "mmd": float(m)}
        pl_module.log("val/sliced_w", sw, sync_dist=True)
        pl_module.log("val/mmd", m, sync_dist=True)
