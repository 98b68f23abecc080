"""Noise models: log-likelihoods agree with pyro and with the samples they draw."""

from __future__ import annotations

import math

import pytest
import torch

from flowbridge.inverse import Gaussian, Laplace, Poisson


def test_gaussian_log_prob_matches_pyro_and_samples() -> None:
    noise = Gaussian(0.3)
    mean = torch.randn(4, 5, dtype=torch.float64)
    y = torch.randn(5, dtype=torch.float64)
    torch.testing.assert_close(noise.log_prob(y[None], mean), noise.distribution(mean).log_prob(y.expand_as(mean)))
    draws = noise.sample(torch.zeros(20000, 1, dtype=torch.float64), generator=torch.Generator().manual_seed(0))
    assert abs(float(draws.std()) - 0.3) < 0.3 * 4 / math.sqrt(2 * 20000)


def test_laplace_samples_have_the_right_scale() -> None:
    noise = Laplace(0.5)
    draws = noise.sample(torch.zeros(40000, 1, dtype=torch.float64), generator=torch.Generator().manual_seed(1))
    # E|e| = b for the Laplace distribution; its std is b, so 4 standard errors.
    assert abs(float(draws.abs().mean()) - 0.5) < 4 * 0.5 / math.sqrt(40000)
    lp = noise.log_prob(torch.zeros(1, 1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64))
    torch.testing.assert_close(lp, torch.tensor([-math.log(1.0)], dtype=torch.float64))


def test_poisson_counts() -> None:
    noise = Poisson(rate=50.0)
    mean = torch.full((30000, 1), 0.4, dtype=torch.float64)
    draws = noise.sample(mean, generator=torch.Generator().manual_seed(2))
    assert abs(float(draws.mean()) - 0.4) < 4 * math.sqrt(0.4 / 50 / 30000)
    assert torch.isfinite(noise.log_prob(draws[:3], mean[:3])).all()


@pytest.mark.parametrize("factory", [Gaussian, Laplace, Poisson])
@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_non_positive_noise_scale_is_refused(factory, bad) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="positive"):
        factory(bad)
