"""log_likelihood through the probability-flow ODE against exact mixture densities."""

import math

import pytest
import torch

from flowbridge import log_likelihood
from flowbridge.analytic import GaussianMixtureInterpolantField
from flowbridge.paths import StochasticInterpolant
from tests.conftest import ring_mixture


@pytest.mark.parametrize("d,n", [(2, 64), (16, 16)])
def test_exact_divergence_matches_log_prob(d, n):
    gm = ring_mixture(d)
    x = gm.sample(n, generator=torch.Generator().manual_seed(0))
    result = log_likelihood(gm.field("linear"), x)
    assert result.exact_divergence
    error_per_dim = (result.log_prob - gm.log_prob(x)).abs() / d
    assert float(error_per_dim.max()) < 0.01, float(error_per_dim.max())
    torch.testing.assert_close(result.bits_per_dim, -result.log_prob / (d * math.log(2)))
    torch.testing.assert_close(result.nats_per_dim, -result.log_prob / d)


def test_hutchinson_is_unbiased_within_its_standard_error():
    d, n = 16, 64
    gm = ring_mixture(d)
    x = gm.sample(n, generator=torch.Generator().manual_seed(1))
    exact = gm.log_prob(x)
    result = log_likelihood(gm.field("linear"), x, hutchinson=True, generator=torch.Generator().manual_seed(2), rtol=1e-5, atol=1e-5)
    assert not result.exact_divergence
    diff = result.log_prob - exact
    standard_error = float(diff.std() / math.sqrt(n))
    assert standard_error > 0.01  # the estimator does fluctuate ...
    assert abs(float(diff.mean())) < 3 * standard_error  # ... around the exact value


def test_hutchinson_is_the_default_above_exact_max_dim_and_reproducible():
    gm = ring_mixture(16)
    x = gm.sample(8, generator=torch.Generator().manual_seed(3))
    a = log_likelihood(gm.field("linear"), x, exact_max_dim=4, generator=torch.Generator().manual_seed(4), rtol=1e-4, atol=1e-4)
    b = log_likelihood(gm.field("linear"), x, exact_max_dim=4, generator=torch.Generator().manual_seed(4), rtol=1e-4, atol=1e-4)
    assert not a.exact_divergence
    torch.testing.assert_close(a.log_prob, b.log_prob, rtol=0, atol=0)


def test_interpolant_likelihood_with_its_source_density():
    gm_src, gm_tgt = ring_mixture(2), ring_mixture(2, k=3, radius=2.0)
    field = GaussianMixtureInterpolantField(gm_src, gm_tgt, StochasticInterpolant("sqrt"))
    x = gm_tgt.sample(32, generator=torch.Generator().manual_seed(5))
    result = log_likelihood(field, x, prior_log_prob=gm_src.log_prob)
    assert float(((result.log_prob - gm_tgt.log_prob(x)).abs() / 2).max()) < 0.01


def test_bad_input():
    gm = ring_mixture(2)
    x = gm.sample(4)
    with pytest.raises(ValueError, match="rtol and atol must be > 0"):
        log_likelihood(gm.field("linear"), x, rtol=0.0)
    with pytest.raises(ValueError, match="t_span"):
        log_likelihood(gm.field("linear"), x, t_span=(0.5, 0.2))
    field = GaussianMixtureInterpolantField(gm, gm)
    with pytest.raises(ValueError, match="prior_log_prob"):
        log_likelihood(field, x)
    with pytest.raises(ValueError, match=r"shape \(B, \.\.\.\)"):
        log_likelihood(gm.field("linear"), torch.zeros(3))
