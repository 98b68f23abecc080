"""Callbacks: sample plots, sample-quality metrics and training curves during training.

Both sample at the first validation batch (``on_validation_batch_start``), by which time the EMA
callbacks (:class:`~flowbridge.training.EMA`, Lightning's ``EMAWeightAveraging``) have swapped the
averaged weights in, so they judge the EMA model whatever the order of the callbacks; the final
plot is drawn at ``on_fit_end``, after the averaged weights were copied into the module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from flowbridge.errors import ArgumentError
from flowbridge.metrics import mmd, sliced_wasserstein

__all__ = ["SampleMetrics", "SamplePlot"]


def _samples(pl_module: Any, dm: Any, num: int, seed: int) -> tuple[Tensor, Tensor | None]:
    """``num`` samples from the module with a fixed seed (labels cycle through the classes)."""
    g = torch.Generator(device=pl_module.device).manual_seed(seed)
    classes = getattr(pl_module, "num_classes", None)
    labels = torch.arange(num) % classes if classes is not None else None
    x0 = None
    if getattr(pl_module, "transports_data", False):
        src = dm.source_reference()
        x0 = src[torch.arange(num) % src.shape[0]]
    with torch.no_grad():
        return pl_module.generate(num, generator=g, labels=labels, x0=x0), labels


def _reference(pl_module: Any, dm: Any, num: int | None = None) -> Tensor:
    """Held-out data in the space the module samples in."""
    ref = dm.reference(num)
    convert = getattr(pl_module, "as_model_space", None)
    return convert(ref) if convert is not None else ref


def _is_digits(x: Tensor) -> bool:
    return x.ndim == 4 and tuple(x.shape[1:]) == (1, 8, 8)


def sample_scores(x: Tensor, ref: Tensor, seed: int = 0) -> dict[str, float]:
    """Sliced Wasserstein and MMD between samples and held-out data (flattened), and for 8x8 digits
    the Fréchet distance in the digit classifier's features (:func:`flowbridge.metrics.digits_frechet_distance`)."""
    n = min(x.shape[0], ref.shape[0])
    flat_x, flat_ref = x[:n].reshape(n, -1).float(), ref[:n].reshape(n, -1).float().to(x.device)
    out = {
        "sliced_w": float(sliced_wasserstein(flat_x, flat_ref, generator=torch.Generator().manual_seed(seed))),
        "mmd": float(mmd(flat_x, flat_ref)),
    }
    if _is_digits(x):
        from flowbridge.metrics import digits_frechet_distance

        out["frechet_digits"] = float(digits_frechet_distance(x[:n], ref[:n]))
    return out


def _log_dir(trainer: pl.Trainer) -> Path:
    return Path(trainer.log_dir or trainer.default_root_dir)


def _class_names(dm: Any, classes: int) -> list[str]:
    names = getattr(dm, "class_names", None) or []
    return [str(n) for n in names] if len(names) == classes else [str(k) for k in range(classes)]


class SamplePlot(pl.Callback):
    """Plots samples while training and at its end, and the training curves at its end.

    At validation of every ``every_n_epochs``-th epoch it writes ``<log_dir>/samples/stepNNNNNNN.png``;
    at the end of fitting ``<log_dir>/samples/final.png`` (from the final, averaged weights) and
    ``<log_dir>/curves.png`` (the logged training loss and validation metrics against the step).
    2-D samples are drawn over held-out data with a legend (data of more dimensions: their first two
    coordinates); images as a grid whose columns are the classes of a class-conditional model. The
    title names the step and the sliced Wasserstein distance to held-out data (for 8x8 digits, the
    Fréchet distance in a digit classifier's features).

    Args:
        every_n_epochs: plot at validation of every ``every_n_epochs``-th epoch.
        num_samples: points (2-D) or images to draw (images: at most 100).
        seed: seed of the plotted samples (fixed, so plots are comparable across epochs).
    """

    def __init__(self, every_n_epochs: int = 1, num_samples: int = 2000, seed: int = 0) -> None:
        if every_n_epochs < 1 or num_samples < 1:
            raise ArgumentError(f"every_n_epochs and num_samples must be positive; got {every_n_epochs}, {num_samples}")
        self.every_n_epochs, self.num_samples, self.seed = every_n_epochs, num_samples, seed
        self.last_path: Path | None = None
        self.final_path: Path | None = None
        self.curves_path: Path | None = None
        self.history: dict[str, list[tuple[int, Any]]] = {}

    def plot(self, trainer: pl.Trainer, pl_module: Any, path: Path, title: str) -> Path | None:
        """Draws samples of ``pl_module`` and saves the figure at ``path`` (None if not plottable)."""
        from flowbridge import viz

        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "reference") or not hasattr(pl_module, "generate"):
            return None
        classes = getattr(pl_module, "num_classes", None)
        num = self.num_samples
        if len(dm.event_shape) == 3:
            num = min(num, 100 if classes is None else classes * max(1, 100 // classes))
        x, _ = _samples(pl_module, dm, num, self.seed)
        x = x.detach().cpu().float()
        ref = _reference(pl_module, dm).cpu().float()
        if not torch.isfinite(x).all():
            return None
        scores = sample_scores(x, ref, self.seed)
        metric = f"Fréchet (digits) {scores['frechet_digits']:.3g}" if "frechet_digits" in scores else f"sliced W {scores['sliced_w']:.3g}"
        if x.ndim == 2 and x.shape[1] >= 2:
            note = "" if x.shape[1] == 2 else f" (first 2 of {x.shape[1]} coordinates)"
            fig = viz.plot_samples(x[:, :2], ref[:, :2], title=f"{title}: {metric}{note}", labels=("samples", "held-out data"))
        elif x.ndim == 4 and x.shape[1] in (1, 3):
            nrow = classes if classes is not None else 10
            columns = _class_names(dm, classes) if classes is not None else None
            fig = viz.image_grid(x, nrow=nrow, title=f"{title}: {metric}", column_labels=columns)
        else:
            return None
        return viz.save_figure(fig, path)

    def on_validation_batch_start(
        self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if batch_idx != 0 or trainer.sanity_checking or not trainer.is_global_zero or trainer.state.fn != "fit":
            return
        # Epochs count from 1 here, as in Lightning's check_val_every_n_epoch (which validates after
        # epochs n-1, 2n-1, ... in 0-based current_epoch), so equal settings coincide.
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        path = _log_dir(trainer) / "samples" / f"step{trainer.global_step:07d}.png"
        self.last_path = self.plot(trainer, pl_module, path, f"step {trainer.global_step}") or self.last_path

    # -- training curves -------------------------------------------------------------------------
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        step = trainer.global_step
        if step % trainer.log_every_n_steps or not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        for name, value in metrics.items():
            if name.startswith("train/"):
                series = self.history.setdefault(name, [])
                if not series or series[-1][0] != step:
                    series.append((step, value.detach().clone() if isinstance(value, Tensor) else value))

    def on_validation_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or trainer.state.fn != "fit":
            return
        for name, value in trainer.callback_metrics.items():
            if name.startswith("val/"):
                self.history.setdefault(name, []).append((trainer.global_step, value.detach().clone() if isinstance(value, Tensor) else value))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if not trainer.is_global_zero or trainer.global_step == 0:
            return
        from flowbridge import viz

        self.final_path = self.plot(trainer, pl_module, _log_dir(trainer) / "samples" / "final.png",
                                    f"final (step {trainer.global_step})")
        curves = {name: ([s for s, _ in series], [float(v) for _, v in series]) for name, series in self.history.items() if series}
        if curves:
            train = {k: v for k, v in curves.items() if k.startswith("train/")}
            val = {k: v for k, v in curves.items() if k.startswith("val/")}
            from matplotlib.figure import Figure

            fig = Figure(figsize=(10.0 if val else 5.0, 3.5))
            axes = fig.subplots(1, 2 if val else 1, squeeze=False)[0]
            if train:
                viz.plot_curves(train, title="training loss", ax=axes[0])
            if val:
                viz.plot_curves(val, title="validation", ax=axes[-1])
            fig.tight_layout()
            self.curves_path = viz.save_figure(fig, _log_dir(trainer) / "curves.png")


class SampleMetrics(pl.Callback):
    """Logs sample-quality metrics between model samples and held-out data at validation.

    Logged as ``val/sliced_w`` (sliced Wasserstein) and ``val/mmd``, and for 8x8 digit images
    ``val/frechet_digits`` (the Fréchet distance in a digit classifier's features,
    :func:`flowbridge.metrics.digits_frechet_distance`). Compare with the data's own noise floor (two
    held-out sets of the same size; ``flowbridge.metrics.noise_floor``,
    ``flowbridge.metrics.digits.digits_frechet_floor``).

    Args:
        num_samples: samples per comparison (capped by the held-out set's size).
        every_n_epochs: measure at every ``every_n_epochs``-th validation.
        seed: seed of the samples and of the projections.
    """

    def __init__(self, num_samples: int = 2000, every_n_epochs: int = 1, seed: int = 0) -> None:
        if num_samples < 2 or every_n_epochs < 1:
            raise ArgumentError(f"need num_samples >= 2 and every_n_epochs >= 1; got {num_samples}, {every_n_epochs}")
        self.num_samples, self.every_n_epochs, self.seed = num_samples, every_n_epochs, seed
        self.last: dict[str, float] = {}

    def on_validation_batch_start(
        self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if batch_idx != 0 or trainer.sanity_checking or trainer.current_epoch % self.every_n_epochs:
            return
        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "reference") or not hasattr(pl_module, "generate"):
            return
        ref = _reference(pl_module, dm, self.num_samples).to(pl_module.device)
        x, _ = _samples(pl_module, dm, ref.shape[0], self.seed)
        self.last = sample_scores(x, ref, self.seed)
        for name, value in self.last.items():
            pl_module.log(f"val/{name}", value, sync_dist=True, batch_size=ref.shape[0])
