"""ΠGDM's cap on the guidance shift near pure noise (the non-finite digit-prior runs)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from flowbridge.fields.base import Field
from flowbridge.inverse import Gaussian, MatrixOperator, Measurement, sample
from flowbridge.paths import GaussianPath


class NoiseFieldWithJacobianError(Field):
    """A noise-predicting field for the prior N(0, I) on the linear VP path, off by a factor (1 + delta).

    The exact noise prediction is E[x_0 | x_t] = sigma_t x. With delta != 0, (sigma^2 / alpha) dx1_hat/dx,
    Tweedie's estimate of Cov[x_1 | x_t], is off by -delta sigma_bar^2 sigma^2: about -1e4 delta at the first
    node (alpha = 0.0066). A trained network's Jacobian error gets the same amplification."""

    def __init__(self, delta: float) -> None:
        super().__init__(GaussianPath("vp"), "noise")
        self.delta = delta

    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        return (1 + self.delta) * self.gaussian_path.coefficients(t, x).sigma * x


def _measurement() -> Measurement:
    g = torch.Generator().manual_seed(5)
    a = torch.randn(3, 6, generator=g, dtype=torch.float64)
    return Measurement(torch.randn(3, generator=g, dtype=torch.float64), MatrixOperator(a), Gaussian(0.05))


def test_uncapped_guidance_diverges_and_the_cap_keeps_it_finite() -> None:
    meas = _measurement()
    field = NoiseFieldWithJacobianError(0.5)
    try:  # measured: |x| 3e3 after one step, 2e57 by the end (non-finite on the digit prior)
        uncapped = float(sample(field, meas, "pigdm", num_samples=64, steps=100, generator=torch.Generator().manual_seed(0),
                                covariance_bound=None).samples.abs().max())
    except FloatingPointError:
        uncapped = float("inf")
    assert uncapped > 1e10
    out = sample(field, meas, "pigdm", num_samples=64, steps=100, generator=torch.Generator().manual_seed(0))
    assert float(out.samples.abs().max()) < 10.0  # measured 3.6 (the exact field gives 4.2)


def test_cap_never_binds_for_the_standard_normal_prior() -> None:
    """For N(0, I) the conditional covariance is exactly r^2 I, the bound: same samples with and without the cap."""
    meas = _measurement()
    field = NoiseFieldWithJacobianError(0.0)
    runs = [sample(field, meas, "pigdm", num_samples=64, steps=50, generator=torch.Generator().manual_seed(0), covariance_bound=cb).samples
            for cb in (None, 1.0)]
    torch.testing.assert_close(runs[0], runs[1], rtol=1e-9, atol=1e-9)


def test_covariance_bound_is_validated() -> None:
    with pytest.raises(ValueError, match="covariance_bound"):
        sample(NoiseFieldWithJacobianError(0.0), _measurement(), "pigdm", num_samples=1, steps=2, covariance_bound=0.0)
