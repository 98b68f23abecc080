"""The digits' Fréchet distance: its classifier (stored weights == the documented training), the
Fréchet formula against a closed form, and that the score tracks sample quality."""

from __future__ import annotations

import pytest
import torch

from flowbridge.metrics import digits_frechet_distance, frechet_distance
from flowbridge.metrics import digits as D


def digits_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train images, train labels, held-out images, held-out labels) of the Digits recipe's default split."""
    from flowbridge.training.data import Digits

    dm = Digits()
    dm.setup("fit")
    s = dm.splits
    assert s is not None and s.train_label is not None and s.val_label is not None
    return s.train, s.train_label, s.val, s.val_label


def test_frechet_distance_of_gaussian_fits_matches_the_closed_form() -> None:
    """Samples of N(0, diag(1, 4, 0.25)) and N((1, 0, -2), diag(9, 1, 0.25)): for commuting covariances
    FD^2 = |m_a - m_b|^2 + sum_i (s_a,i - s_b,i)^2 = 5 + 4 + 1 + 0 = 10. At N = 20000 the estimated
    moments are off by O(1/sqrt(N)) relative, ~1%: a 3% tolerance."""
    from flowbridge.metrics import bures_wasserstein2, sample_moments

    g = torch.Generator().manual_seed(0)
    a = torch.randn(20000, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    b = torch.randn(20000, 3, generator=g, dtype=torch.float64) * torch.tensor([3.0, 1.0, 0.5], dtype=torch.float64)
    b = b + torch.tensor([1.0, 0.0, -2.0], dtype=torch.float64)
    assert float(frechet_distance(a, b)) == pytest.approx(10.0, rel=0.03)
    torch.testing.assert_close(frechet_distance(a, b), bures_wasserstein2(*sample_moments(a), *sample_moments(b)))
    assert float(frechet_distance(a, a)) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="dimensions"):
        frechet_distance(a, b[:, :2])


def test_stored_classifier_classifies_held_out_digits() -> None:
    net = D.digits_classifier()
    _, _, x, y = digits_data()
    accuracy = float((net(x.double()).argmax(1) == y).double().mean())
    assert accuracy > 0.97  # 197 images never seen in training; 0.99 measured


@pytest.mark.slow
def test_stored_classifier_is_what_the_documented_training_gives() -> None:
    """Re-trains the classifier (float64, deterministic; a few seconds) and compares with the file.

    Across machines and thread counts the BLAS may sum in another order (relative 1e-16 per sum);
    400 Adam steps keep such differences far below 1e-6 of the weights.
    """
    x, y, _, _ = digits_data()
    fresh = D.train_digits_classifier(x, y)
    stored = D.digits_classifier()
    for (name, a), (_, b) in zip(fresh.state_dict().items(), stored.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8, msg=name)


def test_digits_frechet_distance_tracks_sample_quality() -> None:
    """Real digits score at the noise floor of their size; noisier, blurred or random images score
    higher, in the order of their damage (all at n = 1600, floor ~0.006)."""
    x, _, _, _ = digits_data()
    g = torch.Generator().manual_seed(0)
    floor, floor_std = D.digits_frechet_floor(x.shape[0], repeats=3)
    real = float(digits_frechet_distance(x))
    assert real < floor + 4 * floor_std + 1e-3
    scores = [float(digits_frechet_distance((x + s * torch.randn(x.shape, generator=g)).clamp(-1, 1))) for s in (0.2, 0.4)]
    blurred = float(digits_frechet_distance(torch.nn.functional.avg_pool2d(x, 3, 1, 1)))
    noise = float(digits_frechet_distance(torch.rand(x.shape, generator=g) * 2 - 1))
    assert real < scores[0] < scores[1] < blurred < noise
    assert scores[0] > 2 * real  # 0.2 pixel noise is resolved at this n (0.023 against 0.006 measured)
    with pytest.raises(ValueError, match="8x8"):
        D.digits_features(torch.zeros(4, 3, 8, 8))
