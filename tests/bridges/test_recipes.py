"""The bridge recipes in models/ run end to end (a few steps each) and give usable models."""

from __future__ import annotations

from pathlib import Path

import torch

from flowbridge.bridges.lightning import DSBMModule, LightSBModule
from flowbridge.cli import build_cli
from flowbridge.cli import main as flowbridge_main

MODELS = Path(__file__).resolve().parents[2] / "models"
QUIET = ["--trainer.logger=false", "--trainer.enable_progress_bar=false", "--trainer.limit_val_batches=0",
         "--trainer.enable_checkpointing=false", "--trainer.callbacks=[]"]


def test_lightsb_recipe(tmp_path: Path) -> None:
    args = ["fit", "--config", str(MODELS / "lightsb_8gaussians_to_moons.yaml"), "--trainer.max_steps=30",
            f"--trainer.default_root_dir={tmp_path}", *QUIET]
    cli = build_cli(args)
    module, data = cli.model, cli.datamodule
    assert isinstance(module, LightSBModule) and cli.trainer.global_step == 30
    # trained from targets: 30 Adam steps lower the LightSB objective below its initial value
    fresh = LightSBModule(dim=2, n_potentials=50, eps=0.1)
    fresh.model.init_from_target(data.splits.train, generator=torch.Generator().manual_seed(0))
    x0, x1 = data.splits.val_source[:2000], data.splits.val[:2000]
    assert float(module.model.loss(x0, x1).detach()) < float(fresh.model.loss(x0, x1).detach())
    y = module.generate(5, x0=x0[:5], generator=torch.Generator().manual_seed(0))
    assert y.shape == (5, 2) and torch.isfinite(y).all()


def test_dsbm_recipe(tmp_path: Path) -> None:
    args = ["fit", "--config", str(MODELS / "dsbm_gaussian.yaml"), "--trainer.max_steps=6",
            "--model.init_args.steps_per_iteration=2", "--model.init_args.cache_size=64", "--model.init_args.sde_steps=5",
            f"--trainer.default_root_dir={tmp_path}", *QUIET]
    cli = build_cli(args)
    module = cli.model
    assert isinstance(module, DSBMModule)
    # steps 0-1 forward (independent pairs), 2-3 backward, 4-5 forward again
    assert module.dsbm.last_trained == "forward" and cli.trainer.global_step == 6
    assert module.generate(4, x0=torch.randn(4, 5)).shape == (4, 5)


def test_sbcfm_recipe(tmp_path: Path) -> None:
    args = ["fit", "--config", str(MODELS / "sbcfm_8gaussians_to_moons.yaml"), "--trainer.max_steps=5",
            f"--trainer.default_root_dir={tmp_path}", *QUIET]
    assert flowbridge_main(args) == 0
