r"""``EMA``: an exponential moving average whose window grows with the run (power-function EMA).

A fixed decay such as 0.999 averages over the last ~1000 steps; in a run of 1000 steps that average
still weighs the random initialisation by :math:`0.999^{1000} \approx 0.37`, and the EMA model is
worse than the raw one. The power-function EMA of Karras et al. (2024, "Analyzing and Improving the
Training Dynamics of Diffusion Models", sec. 3.1) uses at update :math:`t = 1, 2, \dots`

.. math::
    \hat\theta_t = \beta_t\,\hat\theta_{t-1} + (1 - \beta_t)\,\theta_t, \qquad
    \beta_t = (1 - 1/t)^{\gamma + 1},

which is the average of :math:`\theta_1..\theta_t` with weights :math:`\propto \tau^\gamma`: a profile
whose width is a fixed fraction of the run, :math:`\sigma_{rel} = \sqrt{(\gamma+1)/((\gamma+2)^2(\gamma+3))}`
(the standard deviation of the weights over the run's length). The first update copies the weights,
nothing is ever averaged with the initialisation, and a recipe shortened or lengthened keeps an
average over the same share of its steps. ``sigma_rel = 0.1`` (:math:`\gamma \approx 6.94`) averages
over about the last fifth of the run.

The callback follows the conventions of Lightning's ``WeightAveraging`` (the averaged weights are
swapped in for validation and copied into the module at the end of training; checkpoints hold the
average as ``state_dict`` and the raw weights as ``current_model_state``), so :func:`flowbridge.load`
and ``--ckpt_path`` treat it and Lightning's ``EMAWeightAveraging`` alike; it updates with one fused
``lerp`` per dtype and no host synchronisation.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor
from torch.optim.swa_utils import get_ema_multi_avg_fn

from flowbridge.errors import ArgumentError


def sigma_rel_to_gamma(sigma_rel: float) -> float:
    r"""The exponent :math:`\gamma` of the power-function EMA with relative width ``sigma_rel``.

    Solves :math:`\sigma_{rel}^2 = (\gamma+1)/((\gamma+2)^2(\gamma+3))`, i.e. the largest real root of
    :math:`\gamma^3 + 7\gamma^2 + (16 - \sigma_{rel}^{-2})\gamma + (12 - \sigma_{rel}^{-2})`
    (Karras et al. 2024, appendix C.2).
    """
    if isinstance(sigma_rel, bool) or not isinstance(sigma_rel, numbers.Real) or not 0.0 < float(sigma_rel) < math.sqrt(1 / 12):
        raise ArgumentError(f"sigma_rel must lie in (0, {math.sqrt(1 / 12):.4f}) (a width relative to the run); got {sigma_rel!r}")
    t = float(sigma_rel) ** -2
    roots = np.roots([1.0, 7.0, 16.0 - t, 12.0 - t])
    return float(max(r.real for r in roots if abs(r.imag) < 1e-9))


class EMA(pl.Callback):
    """Power-function exponential moving average of the weights (see the module docstring).

    Args:
        sigma_rel: width of the averaging profile relative to the run's length (EDM2's
            :math:`\\sigma_{rel}`); 0.1 averages over roughly the last fifth of the steps, smaller
            values over fewer.
        update_every_n_steps: update after every ``n``-th optimizer step.
    """

    def __init__(self, sigma_rel: float = 0.1, update_every_n_steps: int = 1) -> None:
        if isinstance(update_every_n_steps, bool) or not isinstance(update_every_n_steps, int) or update_every_n_steps < 1:
            raise ArgumentError(f"update_every_n_steps must be a positive integer; got {update_every_n_steps!r}")
        self.gamma = sigma_rel_to_gamma(sigma_rel)  # validates sigma_rel
        self.sigma_rel = float(sigma_rel)
        self.update_every_n_steps = update_every_n_steps
        #: name -> averaged tensor (parameters and floating-point buffers), while fitting.
        self.averaged: dict[str, Tensor] | None = None
        self.last_step = -1

    def decay(self, update: int) -> float:
        """:math:`\\beta_t` of update ``t`` (1-based): 0 at the first update, which copies the weights."""
        return (1.0 - 1.0 / update) ** (self.gamma + 1.0)

    @staticmethod
    def tracked(pl_module: pl.LightningModule) -> dict[str, Tensor]:
        """The module's tensors that are averaged: all parameters and floating-point buffers."""
        out = {name: p for name, p in pl_module.named_parameters()}
        out.update({name: b for name, b in pl_module.named_buffers() if b.is_floating_point()})
        return out

    # -------------------------------------------------------------------------------- fitting
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.averaged = {name: t.detach().clone() for name, t in self.tracked(pl_module).items()}

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The strategy has moved the module by now; the average lives where its weights live.
        if self.averaged is not None:
            live = self.tracked(pl_module)
            self.averaged = {name: t.to(live[name].device) for name, t in self.averaged.items()}
        self.last_step = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if self.averaged is None or step == self.last_step:  # no optimizer step (accumulating)
            return
        self.last_step = step
        if step % self.update_every_n_steps:
            return
        decay = self.decay(step // self.update_every_n_steps)
        live = self.tracked(pl_module)
        groups: dict[tuple[torch.device, torch.dtype], tuple[list[Tensor], list[Tensor]]] = {}
        for name, avg in self.averaged.items():
            pair = groups.setdefault((avg.device, avg.dtype), ([], []))
            pair[0].append(avg)
            pair[1].append(live[name].detach())
        update = get_ema_multi_avg_fn(decay)
        for averaged, current in groups.values():
            update(averaged, current, None)

    def swap(self, pl_module: pl.LightningModule) -> None:
        """Exchanges the module's weights and the average."""
        assert self.averaged is not None
        live = self.tracked(pl_module)
        with torch.no_grad():
            for name, avg in self.averaged.items():
                tmp = live[name].detach().clone()
                live[name].copy_(avg)
                avg.copy_(tmp)

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.averaged is not None and trainer.state.fn == "fit":
            self.swap(pl_module)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.averaged is not None and trainer.state.fn == "fit":
            self.swap(pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.averaged is None:
            return
        live = self.tracked(pl_module)
        with torch.no_grad():
            for name, avg in self.averaged.items():
                live[name].copy_(avg)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.averaged = None

    # -------------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        if self.averaged is None:
            return
        current = checkpoint["state_dict"]
        checkpoint["current_model_state"] = current
        checkpoint["state_dict"] = {name: self.averaged.get(name, value) for name, value in current.items()}
        checkpoint["averaging_state"] = {"method": "power-function EMA", "sigma_rel": self.sigma_rel, "gamma": self.gamma}

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        # Outside fitting there is no average to restore: the checkpoint's state_dict (the average)
        # is what validation and prediction use.
        if self.averaged is None:
            return
        if "current_model_state" in checkpoint:
            averaged = checkpoint["state_dict"]
            for name, avg in self.averaged.items():
                if name in averaged:
                    avg.copy_(averaged[name])
            pl_module.load_state_dict(checkpoint["current_model_state"])
        else:  # a checkpoint written without averaging: start the average from its weights
            for name, avg in self.averaged.items():
                if name in checkpoint["state_dict"]:
                    avg.copy_(checkpoint["state_dict"][name])
