"""Resume loses nothing; checkpoints reload with weights_only; EMA comes from Lightning's callback."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from flowbridge.cli import build_cli, load_module
from tests.training.recipes import tiny_recipe


class KillAtStep(pl.Callback):
    """Simulates a crash: raises once ``global_step`` reaches ``step`` (before that step's checkpoint)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step >= self.step:
            raise RuntimeError("killed")


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_resume_mid_epoch_matches_the_uninterrupted_run(tmp_path: Path) -> None:
    # 10 batches per epoch; the crash at step 17 leaves last.ckpt in the middle of epoch 1.
    straight = build_cli(["fit", "--config", str(tiny_recipe(tmp_path / "a", max_steps=25))])
    reference = _weights(straight.model)

    recipe = tiny_recipe(tmp_path / "b", max_steps=25)
    crashed = build_cli(["--config", str(recipe)], run=False)
    crashed.trainer.callbacks.append(KillAtStep(17))
    with pytest.raises(RuntimeError, match="killed"):
        crashed.trainer.fit(crashed.model, datamodule=crashed.datamodule)
    last = tmp_path / "b" / "run" / "checkpoints" / "last.ckpt"
    saved_step = torch.load(last, weights_only=True)["global_step"]
    assert saved_step in (16, 17) and saved_step % 10 != 0  # mid-epoch
    assert not torch.equal(_weights(crashed.model)["net.input.weight"], reference["net.input.weight"])

    resumed = build_cli(["fit", "--config", str(recipe), "--ckpt_path", "last"])
    assert resumed.trainer.global_step == 25
    final = _weights(resumed.model)
    assert final.keys() == reference.keys()
    for key in reference:
        torch.testing.assert_close(final[key], reference[key], rtol=1e-6, atol=1e-7, msg=key)

    # The raw (non-averaged) weights saved next to the EMA weights agree as well.
    raw_a = torch.load(tmp_path / "a" / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    raw_b = torch.load(last, weights_only=True)
    assert raw_a["global_step"] == raw_b["global_step"] == 25
    for key, value in raw_a["current_model_state"].items():
        torch.testing.assert_close(raw_b["current_model_state"][key], value, rtol=1e-6, atol=1e-7)


def test_checkpoint_holds_ema_weights_and_reloads_with_weights_only(tmp_path: Path) -> None:
    cli = build_cli(["fit", "--config", str(tiny_recipe(tmp_path, max_steps=12))])
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    # EMAWeightAveraging stores the average as state_dict and the raw weights separately.
    assert "current_model_state" in ckpt and "averaging_state" in ckpt
    ema, raw = ckpt["state_dict"]["net.input.weight"], ckpt["current_model_state"]["net.input.weight"]
    assert not torch.equal(ema, raw)
    module = load_module(tmp_path / "run" / "checkpoints" / "last.ckpt")
    torch.testing.assert_close(module.state_dict()["net.input.weight"], ema)
    assert module.event_shape == (2,)
    assert ckpt["hyper_parameters"]["optimizer"]["init_args"]["lr"] == 0.01  # the config, not objects
    x = module.generate(16, generator=torch.Generator().manual_seed(0), steps=4)
    y = cli.model.generate(16, generator=torch.Generator().manual_seed(0), steps=4)
    torch.testing.assert_close(x, y)  # the trained module ends with the EMA weights too


def test_manual_fast_path_steps_exactly_like_automatic_optimisation(tmp_path: Path) -> None:
    """The Trainer-free fast path (no clipping, no accumulation) changes no arithmetic of a step.

    A clip threshold of 1e30 multiplies every gradient by exactly 1.0 but forces Lightning's automatic
    optimisation, so the two runs differ only in the loop that drives them. The step-interval LR
    scheduler must be stepped by the fast path as Lightning would.
    """
    model = {"lr_scheduler": {"class_path": "torch.optim.lr_scheduler.StepLR", "init_args": {"step_size": 3, "gamma": 0.5}}}
    fast = build_cli(["fit", "--config", str(tiny_recipe(tmp_path / "fast", max_steps=14, model=model))])
    auto = build_cli(["fit", "--config", str(tiny_recipe(tmp_path / "auto", max_steps=14, model=model,
                                                          trainer={"gradient_clip_val": 1e30}))])
    assert not fast.model.automatic_optimization and auto.model.automatic_optimization
    assert fast.trainer.global_step == auto.trainer.global_step == 14
    for key, value in _weights(auto.model).items():
        torch.testing.assert_close(_weights(fast.model)[key], value, rtol=0, atol=0, msg=key)
    lr = [t.optimizers[0].param_groups[0]["lr"] for t in (fast.trainer, auto.trainer)]
    assert lr[0] == lr[1] == 0.01 * 0.5 ** (14 // 3)


class CountBackward(pl.Callback):
    """Listens to the backward hook, which turns the dispatch-free manual step off."""

    def __init__(self) -> None:
        self.calls = 0

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.calls += 1


def test_dispatch_free_step_matches_the_dispatched_step_and_yields_to_listeners(tmp_path: Path) -> None:
    """Skipping Lightning's backward/step dispatch changes no weight, and a callback on those hooks
    still gets every call (the module falls back to the dispatched step for it)."""
    direct = build_cli(["fit", "--config", str(tiny_recipe(tmp_path / "direct", max_steps=14))])
    dispatched = build_cli(["--config", str(tiny_recipe(tmp_path / "dispatched", max_steps=14))], run=False)
    counter = CountBackward()
    dispatched.trainer.callbacks.append(counter)
    dispatched.trainer.fit(dispatched.model, datamodule=dispatched.datamodule)
    assert direct.model.__dict__["_direct_step"] and not dispatched.model.__dict__["_direct_step"]
    assert counter.calls == 14
    assert direct.trainer.global_step == dispatched.trainer.global_step == 14
    for key, value in _weights(dispatched.model).items():
        torch.testing.assert_close(_weights(direct.model)[key], value, rtol=0, atol=0, msg=key)
