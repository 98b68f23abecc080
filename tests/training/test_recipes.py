"""Every recipe in ``models/`` runs from the command line: ``fit`` (50 steps, ``accelerator=auto``),
``sample`` (a PNG), ``predict`` and ``validate`` on the checkpoint it wrote, and the outputs say so.

``accelerator=auto`` is what the recipes ask for: on a machine with CUDA this test trains on the
GPU (the issue this guards against: pre-flight checks that ran before the parameters were moved);
without one it is a CPU run. Nothing here may print a warning that flowbridge can avoid.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from flowbridge.cli import main

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted(p.stem for p in (ROOT / "models").glob("*.yaml"))
# One recipe of each module type runs predict and validate in the default suite; the rest with -m slow.
TYPES = {"fm_moons", "interpolant_8gaussians_to_moons", "edm_digits", "bfn_discretized_digits", "lightsb_8gaussians_to_moons",
         "sbcfm_8gaussians_to_moons", "dsbm_gaussian"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run(args: list[str]) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(args)
    # DeprecationWarnings are Python's business (hidden outside __main__, e.g. jsonargparse's about
    # Lightning's own calls); every other warning would reach the user.
    messages = [f"{w.category.__name__}: {w.message}" for w in caught if not issubclass(w.category, DeprecationWarning)]
    assert not messages, messages
    return code


def test_every_recipe_is_tested() -> None:
    assert len(RECIPES) >= 12 and TYPES <= set(RECIPES)


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_fits_50_steps_on_auto_and_samples_a_png(tmp_path: Path, recipe: str, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "run"
    common = ["--config", str(ROOT / "models" / f"{recipe}.yaml"), f"--trainer.default_root_dir={root}", "--threads=1"]
    assert _run(["fit", *common, "--trainer.max_steps=50", "--trainer.accelerator=auto"]) == 0
    out = capsys.readouterr().out
    ckpt = root / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["global_step"] == 50
    # The quiet log says where things went.
    assert f"checkpoint: {ckpt}" in out and f"checkpoints in {root / 'checkpoints'}" in out, out
    assert len(out.splitlines()) < 30, out

    png, samples = tmp_path / "samples.png", tmp_path / "samples.pt"
    assert _run(["sample", "--ckpt", str(ckpt), "--num", "24", "--steps", "4", "--out", str(samples), "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 2000
    x = torch.load(samples, weights_only=True)["x"]
    assert x.shape[0] == 24 and torch.isfinite(x).all()


@pytest.mark.parametrize(
    "recipe", [pytest.param(r, marks=() if r in TYPES else pytest.mark.slow) for r in RECIPES]
)
def test_predict_and_validate_on_the_checkpoint(tmp_path: Path, recipe: str, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "run"
    common = ["--config", str(ROOT / "models" / f"{recipe}.yaml"), f"--trainer.default_root_dir={root}", "--threads=1",
              "--trainer.accelerator=cpu"]
    assert _run(["fit", *common, "--trainer.max_steps=4"]) == 0
    data_key = "--data.init_args.predict_samples=12"
    assert _run(["predict", *common, "--ckpt_path=last", data_key]) == 0
    predictions = torch.load(root / "predictions.pt", weights_only=True)["x"]
    assert predictions.shape[0] == 12 and torch.isfinite(predictions).all()
    capsys.readouterr()
    assert _run(["validate", *common, "--ckpt_path=last", "--trainer.limit_val_batches=1"]) == 0
    out = capsys.readouterr().out
    assert "val/" in out, out
