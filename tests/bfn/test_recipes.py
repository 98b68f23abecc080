"""The BFN recipes parse, build the right objects and run end to end for a few steps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flowbridge.bfn import BFNModule, ContinuousBFNObjective, DiscreteBFN, DiscretizedBFN

ROOT = Path(__file__).resolve().parents[2]


def test_continuous_recipe_builds_under_flowbridge_fit() -> None:
    from flowbridge.cli import build_cli

    cli = build_cli(["--config", str(ROOT / "models/bfn_continuous_8gaussians.yaml")], run=False)
    assert isinstance(cli.model.objective, ContinuousBFNObjective)
    assert cli.model.path.schedule.sigma1 == 0.02


@pytest.mark.parametrize(
    ("recipe", "kind", "transform"),
    [
        ("bfn_discretized_digits", DiscretizedBFN, "quantize"),
        ("bfn_discrete_binarized_digits", DiscreteBFN, "binarize"),
        ("bfn_discrete_text", DiscreteBFN, "classes"),
    ],
)
def test_bfn_recipes_build(recipe: str, kind: type, transform: str) -> None:
    from flowbridge.cli import build_cli

    cli = build_cli(["--config", str(ROOT / f"models/{recipe}.yaml")], run=False)
    assert isinstance(cli.model, BFNModule)
    assert isinstance(cli.model.bfn, kind) and cli.model.transform == transform


def test_binarized_recipe_fits_a_few_steps_and_samples(tmp_path: Path) -> None:
    from flowbridge.cli import build_cli

    cli = build_cli(
        ["fit", "--config", str(ROOT / "models/bfn_discrete_binarized_digits.yaml"), "--trainer.max_steps=3",
         f"--trainer.default_root_dir={tmp_path}", "--trainer.enable_progress_bar=false", "--trainer.callbacks=[]"],
    )
    module = cli.model
    assert module.event_shape == (1, 8, 8)
    with torch.no_grad():
        x = module.generate(4, generator=torch.Generator().manual_seed(0), steps=3)
    assert x.shape == (4, 1, 8, 8) and set(x.unique().tolist()) <= {-1.0, 1.0}
