"""Every Trainer feature on every flowbridge module: 10 steps, killed, resumed == uninterrupted.

For each module type (flow matching, a data-to-data interpolant, EDM on a small UNet with labels,
a BFN, LightSB, DSBM) and each Trainer feature (gradient accumulation, the accumulation scheduler,
gradient clipping by norm and by value, mixed precision, profilers, Lightning's and flowbridge's
EMA, changed flags at resume, an interrupt by signal) a run of 10 optimizer steps is stopped after
step 6 -- an exception after the step, or ``SaveOnInterrupt``'s signal path -- and resumed from
``last.ckpt`` in a fresh process state. The final weights (raw and averaged), ``global_step`` and
the learning rate must equal those of the uninterrupted run *exactly*: both runs execute the same
kernels in the same order in one process with one thread, so any difference is lost state (a data
position, a random stream, an optimizer or EMA state), not rounding.

The default suite runs every feature on flow matching and every module with a few features; the
full matrix (``-m slow``) runs every pair. DDP on two CPU processes is in ``test_ddp.py``.
"""

from __future__ import annotations

import functools
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging, GradientAccumulationScheduler, ModelCheckpoint

from flowbridge.paths import GaussianPath, StochasticInterpolant, VESchedule
from flowbridge.training import EMA, Digits, PairedToy, Toy2D
from flowbridge.training.interrupt import SaveOnInterrupt, TrainingInterrupted

STEPS, STOP = 10, 6


# ------------------------------------------------------------------------------------------------
# modules: tiny versions of each recipe's module type, 4 batches per epoch
# ------------------------------------------------------------------------------------------------
def _adam(lr: float = 1e-2) -> Callable[..., torch.optim.Optimizer]:
    return functools.partial(torch.optim.Adam, lr=lr)


def _step_lr(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)


def flow_matching() -> tuple[pl.LightningModule, pl.LightningDataModule]:
    from flowbridge.nets import MLP
    from flowbridge.objectives import FlowMatching
    from flowbridge.training import CosineLR, GenerativeModule

    module = GenerativeModule(MLP(2, hidden=32, depth=2), GaussianPath("linear"), FlowMatching, optimizer=_adam(),
                              lr_scheduler=functools.partial(CosineLR, eta_min=1e-3), seed=3)
    return module, Toy2D("moons", n=256, val_size=64, batch_size=64, seed=1)


def interpolant() -> tuple[pl.LightningModule, pl.LightningDataModule]:
    from flowbridge.nets import MLP
    from flowbridge.objectives import InterpolantObjective
    from flowbridge.training import GenerativeModule

    module = GenerativeModule(MLP(2, hidden=32, depth=2), StochasticInterpolant(gamma_scale=0.5, t_min=0.001, t_max=0.999),
                              InterpolantObjective, denoiser=MLP(2, hidden=16, depth=2), optimizer=_adam(),
                              lr_scheduler=_step_lr, seed=3)
    return module, PairedToy("8gaussians", "moons", n=256, val_size=64, batch_size=64, seed=1)


def edm_unet() -> tuple[pl.LightningModule, pl.LightningDataModule]:
    from flowbridge.nets import UNet
    from flowbridge.objectives import DenoisingScoreMatching
    from flowbridge.training import GenerativeModule, LogNormalNoiseTime

    path = GaussianPath(VESchedule(sigma_min=0.002, sigma_max=80.0))
    # 16 channels: GroupNorm's 8 groups then hold 2 channels each; with one channel per group the
    # per-channel conditioning bias of the ResBlocks would be normalised away (labels and times ignored).
    net = UNet(in_channels=1, image_size=8, base_channels=16, channel_mults=[1], num_res_blocks=1, num_classes=10)
    module = GenerativeModule(net, path, functools.partial(DenoisingScoreMatching, weighting="edm"), preconditioning="edm",
                              time_sampler=LogNormalNoiseTime(), label_dropout=0.1, optimizer=_adam(3e-3),
                              lr_scheduler=_step_lr, seed=3)
    return module, Digits(val_size=197, batch_size=400, seed=1)


def bfn() -> tuple[pl.LightningModule, pl.LightningDataModule]:
    from flowbridge.bfn import BFNModule, ContinuousBFN
    from flowbridge.nets import MLP

    module = BFNModule(MLP(2, hidden=32, depth=2), ContinuousBFN(sigma1=0.02), optimizer=_adam(), lr_scheduler=_step_lr, seed=3)
    return module, Toy2D("8gaussians", n=256, val_size=64, batch_size=64, seed=1)


def lightsb() -> tuple[pl.LightningModule, pl.LightningDataModule]:
    from flowbridge.bridges.lightning import LightSBModule

    module = LightSBModule(2, n_potentials=8, eps=0.1, optimizer=_adam(), lr_scheduler=_step_lr, seed=3)
    return module, PairedToy("8gaussians", "moons", n=256, val_size=64, batch_size=64, seed=1)


def dsbm() -> tuple[pl.LightningModule, pl.LightningDataModule]:
    from flowbridge.bridges.lightning import DSBMModule

    # Outer iterations of 4 steps: the stop after step 6 falls inside iteration 1 (backward), whose
    # cache the resumed run must rebuild from iteration 1's seed and the restored forward network.
    module = DSBMModule(2, hidden=16, depth=1, steps_per_iteration=4, cache_size=128, sde_steps=4, batch_size=32,
                        optimizer=_adam(), lr_scheduler=_step_lr, seed=3)
    return module, PairedToy("8gaussians", "moons", n=256, val_size=64, batch_size=64, seed=1)


MODULES: dict[str, Callable[[], tuple[pl.LightningModule, pl.LightningDataModule]]] = {
    "flow_matching": flow_matching, "interpolant": interpolant, "edm_unet": edm_unet, "bfn": bfn,
    "lightsb": lightsb, "dsbm": dsbm,
}


# ------------------------------------------------------------------------------------------------
# features: Trainer arguments and callbacks (and those of the resumed run, where they differ)
# ------------------------------------------------------------------------------------------------
def _cuda_fp16() -> bool:
    return torch.cuda.is_available()


FEATURES: dict[str, dict[str, Any]] = {
    "plain": {},
    "accumulate": {"trainer": {"accumulate_grad_batches": 2}},
    # 4 batches per epoch: epoch 0 steps every batch, later epochs every second batch.
    "accumulation_scheduler": {"callbacks": lambda: [GradientAccumulationScheduler({0: 1, 1: 2})]},
    "clip_norm": {"trainer": {"gradient_clip_val": 0.5, "gradient_clip_algorithm": "norm"}},
    "clip_value": {"trainer": {"gradient_clip_val": 0.05, "gradient_clip_algorithm": "value"}},
    "bf16_mixed": {"trainer": {"precision": "bf16-mixed"}},
    "fp16_mixed": {"trainer": {"precision": "16-mixed"}, "needs": _cuda_fp16},
    "profiler_simple": {"trainer": {"profiler": "simple"}},
    "profiler_advanced": {"trainer": {"profiler": "advanced"}},
    "ema_lightning": {"callbacks": lambda: [EMAWeightAveraging(decay=0.8)]},
    "ema_flowbridge": {"callbacks": lambda: [EMA(sigma_rel=0.2)]},
    # The resumed run adds clipping that changes nothing (a bound of 1e30 multiplies by exactly 1),
    # logs at another interval and profiles: the step count, streams and schedule must continue.
    "changed_flags": {"callbacks": lambda: [EMA()],
                      "resume_trainer": {"gradient_clip_val": 1e30, "log_every_n_steps": 3, "profiler": "simple"}},
    "interrupt_signal": {"callbacks": lambda: [EMA()], "stop": "signal"},
}

DEFAULT = {(m, "plain") for m in MODULES} | {("flow_matching", f) for f in FEATURES} | {
    ("interpolant", "accumulate"), ("edm_unet", "ema_flowbridge"), ("edm_unet", "accumulation_scheduler"),
    ("bfn", "bf16_mixed"), ("bfn", "changed_flags"), ("lightsb", "clip_value"), ("lightsb", "interrupt_signal"),
    ("dsbm", "accumulate"), ("dsbm", "clip_norm"), ("dsbm", "changed_flags"),
}
CASES = [
    pytest.param(m, f, id=f"{m}-{f}", marks=() if (m, f) in DEFAULT else pytest.mark.slow)
    for m in MODULES for f in FEATURES
]


class StopAfter(pl.Callback):
    """After optimizer step ``step``: raise (a crash) or deliver SIGINT to ``SaveOnInterrupt``."""

    def __init__(self, step: int, how: str) -> None:
        self.step, self.how = step, how

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step < self.step:
            return
        if self.how == "signal":
            handler = next(cb for cb in trainer.callbacks if isinstance(cb, SaveOnInterrupt))
            if handler.requested is None:
                handler.request(signal.SIGINT)
        else:
            raise RuntimeError("killed")


def _run(make: Callable[[], tuple[pl.LightningModule, pl.LightningDataModule]], feature: dict[str, Any], root: Path, *,
         stop: str | None = None, resume: bool = False) -> tuple[pl.Trainer, pl.LightningModule]:
    torch.manual_seed(0)  # the same initial weights in every run
    module, data = make()
    callbacks = list(feature.get("callbacks", lambda: [])())
    if stop == "signal":
        callbacks.append(SaveOnInterrupt())
    if stop is not None:
        callbacks.insert(0, StopAfter(STOP, stop))
    callbacks.append(ModelCheckpoint(dirpath=root / "checkpoints", save_last=True, every_n_train_steps=1, save_top_k=0))
    trainer_args = {**feature.get("trainer", {}), **(feature.get("resume_trainer", {}) if resume else {})}
    trainer = pl.Trainer(
        max_steps=STEPS, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=str(root), callbacks=callbacks, deterministic=True,
        **trainer_args,
    )
    trainer.fit(module, datamodule=data, ckpt_path="last" if resume else None)
    return trainer, module


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(("module_name", "feature_name"), CASES)
def test_killed_and_resumed_run_equals_the_uninterrupted_run(tmp_path: Path, one_thread: None, module_name: str,
                                                             feature_name: str) -> None:
    feature = FEATURES[feature_name]
    if "needs" in feature and not feature["needs"]():
        pytest.skip(f"{feature_name} is not supported on this device")
    make = MODULES[module_name]
    straight_trainer, straight = _run(make, feature, tmp_path / "straight")

    how = feature.get("stop", "exception")
    with pytest.raises(TrainingInterrupted if how == "signal" else RuntimeError):
        _run(make, feature, tmp_path / "resumed", stop=how)
    saved = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] in (STOP - 1, STOP), "the stop must leave a checkpoint in the middle of the run"
    resumed_trainer, resumed = _run(make, feature, tmp_path / "resumed", resume=True)

    assert straight_trainer.global_step == resumed_trainer.global_step == STEPS
    lrs = [t.optimizers[0].param_groups[0]["lr"] for t in (straight_trainer, resumed_trainer)]
    assert lrs[0] == lrs[1], lrs
    # The modules end with the averaged weights where an EMA callback ran, the raw ones otherwise.
    a, b = _state(straight), _state(resumed)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=0, msg=f"{key} (final module)")
    # The last checkpoints hold the same raw weights (and the same averages) too.
    ckpt_a = torch.load(tmp_path / "straight" / "checkpoints" / "last.ckpt", weights_only=True)
    ckpt_b = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt_a["global_step"] == ckpt_b["global_step"] == STEPS
    for section in ("state_dict", "current_model_state"):
        assert (section in ckpt_a) == (section in ckpt_b)
        for key, value in ckpt_a.get(section, {}).items():
            torch.testing.assert_close(ckpt_b[section][key], value, rtol=0, atol=0, msg=f"{key} ({section})")
