"""Resume loses nothing; checkpoints reload with weights_only; EMA comes from a callback."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

import flowbridge
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
    straight = build_cli(["fit", "--config", str(tiny_recipe(tmp_path / "a", max_steps=25)), "--threads", "1"])
    reference = _weights(straight.model)

    recipe = tiny_recipe(tmp_path / "b", max_steps=25)
    crashed = build_cli(["--config", str(recipe), "--threads", "1"], run=False)
    crashed.trainer.callbacks.append(KillAtStep(17))
    with pytest.raises(RuntimeError, match="killed"):
        crashed.trainer.fit(crashed.model, datamodule=crashed.datamodule)
    last = tmp_path / "b" / "run" / "checkpoints" / "last.ckpt"
    saved_step = torch.load(last, weights_only=True)["global_step"]
    assert saved_step in (16, 17) and saved_step % 10 != 0  # mid-epoch
    assert not torch.equal(_weights(crashed.model)["net.input.weight"], reference["net.input.weight"])

    resumed = build_cli(["fit", "--config", str(recipe), "--ckpt_path", "last", "--threads", "1"])
    assert resumed.trainer.global_step == 25
    final = _weights(resumed.model)
    assert final.keys() == reference.keys()
    for key in reference:
        # One thread in both processes: the same kernels in the same order, so the runs agree to
        # the last bit; the tolerance only covers a BLAS that reorders sums between processes.
        torch.testing.assert_close(final[key], reference[key], rtol=1e-6, atol=1e-7, msg=key)

    # The raw (non-averaged) weights saved next to the EMA weights agree as well.
    raw_a = torch.load(tmp_path / "a" / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    raw_b = torch.load(last, weights_only=True)
    assert raw_a["global_step"] == raw_b["global_step"] == 25
    for key, value in raw_a["current_model_state"].items():
        torch.testing.assert_close(raw_b["current_model_state"][key], value, rtol=1e-6, atol=1e-7)


def test_checkpoint_holds_ema_weights_and_reloads_with_weights_only(tmp_path: Path) -> None:
    cli = build_cli(["fit", "--config", str(tiny_recipe(tmp_path, max_steps=12))])
    path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(path, weights_only=True)
    # EMAWeightAveraging stores the average as state_dict and the raw weights separately.
    assert "current_model_state" in ckpt and "averaging_state" in ckpt
    ema, raw = ckpt["state_dict"]["net.input.weight"], ckpt["current_model_state"]["net.input.weight"]
    assert not torch.equal(ema, raw)
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = load_module(path)
    # No "net is an instance of nn.Module" warning (DeprecationWarnings are jsonargparse's, about Lightning's calls).
    assert not [str(w.message) for w in caught if not issubclass(w.category, DeprecationWarning)]
    torch.testing.assert_close(module.state_dict()["net.input.weight"], ema)
    torch.testing.assert_close(flowbridge.load(path, weights="raw").state_dict()["net.input.weight"], raw)
    assert module.event_shape == (2,)
    assert ckpt["hyper_parameters"]["optimizer"]["init_args"]["lr"] == 0.01  # the config, not objects
    x = module.generate(16, generator=torch.Generator().manual_seed(0), steps=4)
    y = cli.model.generate(16, generator=torch.Generator().manual_seed(0), steps=4)
    torch.testing.assert_close(x, y)  # the trained module ends with the EMA weights too


def test_resuming_a_finished_run_with_more_steps_and_new_flags_takes_only_the_missing_steps(tmp_path: Path) -> None:
    """12 steps, then ``--ckpt_path last`` to ``max_steps=20`` with gradient clipping added: 8 more
    optimizer steps (the step count, the random streams and the LR schedule continue)."""
    model = {"lr_scheduler": {"class_path": "torch.optim.lr_scheduler.StepLR", "init_args": {"step_size": 3, "gamma": 0.5}}}
    recipe = tiny_recipe(tmp_path / "a", max_steps=12, model=model)
    build_cli(["fit", "--config", str(recipe), "--threads", "1"])

    class CountSteps(pl.Callback):
        def __init__(self) -> None:
            self.steps = 0

        def on_before_optimizer_step(self, *args: object) -> None:
            self.steps += 1

    resumed = build_cli(["--config", str(recipe), "--trainer.max_steps", "20", "--trainer.gradient_clip_val", "1e30",
                         "--threads", "1"], run=False)
    counter = CountSteps()
    resumed.trainer.callbacks.append(counter)
    resumed.trainer.fit(resumed.model, datamodule=resumed.datamodule, ckpt_path="last")
    assert counter.steps == 8 and resumed.trainer.global_step == 20
    straight = build_cli(["fit", "--config", str(tiny_recipe(tmp_path / "b", max_steps=20, model=model)), "--threads", "1"])
    for key, value in _weights(straight.model).items():
        torch.testing.assert_close(_weights(resumed.model)[key], value, rtol=1e-6, atol=1e-7, msg=key)
    lr = [t.optimizers[0].param_groups[0]["lr"] for t in (resumed.trainer, straight.trainer)]
    assert lr[0] == lr[1] == 0.01 * 0.5 ** (20 // 3)
