"""The power-function EMA: its closed form, its width, and a short recipe whose EMA beats its raw weights."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

import flowbridge
from flowbridge.cli import main
from flowbridge.metrics import sliced_wasserstein
from flowbridge.metrics.quality import compare_to_truth
from flowbridge.training import EMA, Toy2D
from flowbridge.training.ema import sigma_rel_to_gamma
from tests.training.test_trainer_features import MODULES

ROOT = Path(__file__).resolve().parents[2]


def test_sigma_rel_matches_edm2_and_the_defining_formula() -> None:
    # Karras et al. 2024 quote gamma = 16.97 for sigma_rel = 0.05 and 6.94 for 0.10.
    assert sigma_rel_to_gamma(0.05) == pytest.approx(16.97, abs=0.01)
    assert sigma_rel_to_gamma(0.10) == pytest.approx(6.94, abs=0.01)
    for sigma in (0.02, 0.1, 0.25):
        g = sigma_rel_to_gamma(sigma)
        assert math.sqrt((g + 1) / ((g + 2) ** 2 * (g + 3))) == pytest.approx(sigma, rel=1e-9)
    for bad in (0.0, -0.1, 0.3, float("nan")):
        with pytest.raises(ValueError, match="sigma_rel"):
            EMA(sigma_rel=bad)


class RecordWeights(pl.Callback):
    """The raw weights after every optimizer step (before the EMA callback updates)."""

    def __init__(self) -> None:
        self.history: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
        self.history.append({k: p.detach().double().clone() for k, p in pl_module.named_parameters()})


def test_ema_is_the_power_weighted_average_of_the_iterates() -> None:
    r"""After ``t`` updates the EMA is :math:`\sum_\tau w_\tau\theta_\tau` with
    :math:`w_\tau = (\tau^{\gamma+1} - (\tau-1)^{\gamma+1}) / t^{\gamma+1}` (the product of the
    :math:`\beta_k` telescopes), which sums to 1 and gives the first iterate no special weight."""
    torch.manual_seed(0)
    module, data = MODULES["flow_matching"]()
    ema, record = EMA(sigma_rel=0.15), RecordWeights()
    trainer = pl.Trainer(max_steps=12, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, limit_val_batches=0, callbacks=[record, ema])
    trainer.fit(module, datamodule=data)
    t, g = len(record.history), ema.gamma
    weights = [(tau ** (g + 1) - (tau - 1) ** (g + 1)) / t ** (g + 1) for tau in range(1, t + 1)]
    assert sum(weights) == pytest.approx(1.0, abs=1e-12)
    final = dict(module.named_parameters())  # the average, copied in at the end of training
    for name in final:
        expected = sum(w * h[name] for w, h in zip(weights, record.history))
        # float32 updates of float32 weights: a few ulps of the weights' size per step.
        torch.testing.assert_close(final[name].detach().double(), expected, rtol=1e-5, atol=1e-6, msg=name)


def _quality(module: torch.nn.Module, seed: int) -> float:
    with torch.no_grad():
        x = module.generate(4000, generator=torch.Generator().manual_seed(seed))
    report = compare_to_truth(x, Toy2D("moons").sample_reference, sliced_wasserstein, sets=4,
                              generator=torch.Generator().manual_seed(1000 + seed))
    return report.ratio


@pytest.mark.slow  # 25 s on a quiet core; the closed-form test above guards the averaging in the default suite
def test_a_1000_step_fm_moons_ema_is_no_worse_than_its_raw_weights(tmp_path: Path) -> None:
    """The recipe shortened five-fold, as the docs show: its EMA checkpoint must not be worse.

    Both sets of weights are scored on the same noise and the same true draws (six seeds; each
    score is sliced W over 4 sets of 4000 points, in units of the noise floor), and the EMA may be
    worse only by less than two standard errors of the paired differences -- the Monte-Carlo error
    of the comparison itself. With the fixed 0.999 decay this replaces, issue 18 measured sliced W
    0.183 for the EMA against 0.072 for the raw weights; the power-function EMA scores about 1.35
    against 1.55 noise-floor units.
    """
    assert main(["fit", "--config", str(ROOT / "models/fm_moons.yaml"), "--trainer.max_steps=1000",
                 f"--trainer.default_root_dir={tmp_path}", "--trainer.enable_progress_bar=false",
                 "--trainer.limit_val_batches=0", "--threads=1"]) == 0
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    ema, raw = flowbridge.load(ckpt), flowbridge.load(ckpt, weights="raw")
    differences = [_quality(ema, s) - _quality(raw, s) for s in range(6)]
    mean, se = statistics.mean(differences), statistics.stdev(differences) / math.sqrt(len(differences))
    print("EMA - raw, in noise-floor units:", [round(d, 3) for d in differences])
    assert mean <= 2 * se, (mean, se)
