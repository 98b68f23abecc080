"""LR schedules that follow the run's length (no second number to edit when max_steps changes)."""

from __future__ import annotations

import functools
import math

import lightning.pytorch as pl
import pytest
import torch

from flowbridge.training import CosineLR
from tests.training.test_trainer_features import flow_matching


def _lr_trace(max_steps: int, scheduler) -> list[float]:
    torch.manual_seed(0)
    module, data = flow_matching()
    optimizer, _ = module.factories.value
    module.factories.value = (optimizer, scheduler)
    lrs: list[float] = []

    class Trace(pl.Callback):
        def on_train_batch_start(self, trainer: pl.Trainer, *args: object) -> None:
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer = pl.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, limit_val_batches=0, callbacks=[Trace()])
    trainer.fit(module, datamodule=data)
    return lrs


@pytest.mark.parametrize("max_steps", [8, 20])
def test_cosine_lr_decays_over_the_trainers_max_steps(max_steps: int) -> None:
    lrs = _lr_trace(max_steps, functools.partial(CosineLR, eta_min=1e-3, warmup_steps=2))
    peak, low = 1e-2, 1e-3
    expected = [peak * (k + 1) / 2 if k < 2 else low + (peak - low) * 0.5 * (1 + math.cos(math.pi * (k - 2) / (max_steps - 2)))
                for k in range(max_steps)]
    assert lrs == pytest.approx(expected, rel=1e-12)


def test_cosine_lr_checks_its_arguments_and_needs_a_length() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="eta_min"):
        CosineLR(opt, eta_min=-1.0)
    with pytest.raises(ValueError, match="warmup_steps"):
        CosineLR(opt, warmup_steps=-1)
    with pytest.raises(ValueError, match="no room after warmup_steps=5"):
        CosineLR(opt, warmup_steps=5, total_steps=5)
    free = CosineLR(opt)  # the first value needs no length ...
    with pytest.raises(RuntimeError, match="does not know the run's length"):
        free.step()  # ... the second does


def test_a_torch_schedule_whose_length_disagrees_with_the_run_warns() -> None:
    with pytest.warns(UserWarning, match="T_max=50 but the run has 8 optimizer steps"):
        _lr_trace(8, functools.partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=50))
