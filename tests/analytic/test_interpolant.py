"""The exact mixture-to-mixture interpolant field against independent characterisations."""

import math

import pytest
import torch

from flowbridge.analytic import GaussianMixture, GaussianMixtureInterpolantField
from flowbridge.paths import StochasticInterpolant
from tests.conftest import ring_mixture


def _field(d: int, gamma: str = "sqrt", scale: float = 1.0) -> GaussianMixtureInterpolantField:
    means = torch.zeros(2, d, dtype=torch.float64)
    means[0, 0], means[1, 0] = -2.0, 2.0
    source = GaussianMixture(torch.tensor([0.3, 0.7], dtype=torch.float64), means, torch.tensor([0.3, 0.5], dtype=torch.float64))
    return GaussianMixtureInterpolantField(source, ring_mixture(d), StochasticInterpolant(gamma, gamma_scale=scale))


def _points(d: int, n: int = 16) -> torch.Tensor:
    return 2 * torch.randn(n, d, dtype=torch.float64, generator=torch.Generator().manual_seed(d))


@pytest.mark.parametrize("gamma", ["sqrt", "quadratic", "sin2"])
@pytest.mark.parametrize("t", [1e-3, 0.3, 0.75, 0.999])
def test_drift_satisfies_the_continuity_equation(gamma, t):
    # d/dt log p + div b + b . grad log p = 0 is the transport equation; it pins the drift down
    # (given the marginals) independently of how it was derived.
    d = 3
    field, x = _field(d, gamma), _points(d)
    tt, h = torch.tensor(t, dtype=torch.float64), 1e-6
    dlogp = (field.log_prob(x, tt + h) - field.log_prob(x, tt - h)) / (2 * h)
    xr = x.clone().requires_grad_(True)
    b = field.velocity(xr, tt)
    div = sum(torch.autograd.grad(b[:, i].sum(), xr, retain_graph=True)[0][:, i] for i in range(d))
    residual = dlogp + div + (b.detach() * field.score(x, tt)).sum(1)
    assert residual.abs().max() < 1e-5 * (1 + dlogp.abs().max())


def test_score_is_the_gradient_of_the_log_density_and_denoiser_is_minus_gamma_score():
    field, x = _field(4), _points(4)
    t = torch.tensor(0.4, dtype=torch.float64)
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(field.log_prob(xr, t).sum(), xr)
    torch.testing.assert_close(field.score(x, t), grad, rtol=1e-10, atol=1e-10)
    gamma = field.interpolant.coefficients(t, x).gamma
    torch.testing.assert_close(field.denoise(x, t), -gamma * field.score(x, t), rtol=1e-12, atol=1e-12)


def test_posterior_means_reassemble_the_state():
    # x_t = a E[x0|x] + b E[x1|x] + gamma E[z|x] holds exactly because x_t is linear in (x0, x1, z).
    field, x = _field(3), _points(3)
    t = torch.tensor(0.6, dtype=torch.float64)
    c = field.interpolant.coefficients(t, x)
    rebuilt = c.a * field.source_mean(x, t) + c.b * field.target_mean(x, t) + c.gamma * field.denoise(x, t)
    torch.testing.assert_close(rebuilt, x, rtol=1e-12, atol=1e-12)


def test_marginal_density_matches_monte_carlo_moments():
    field = _field(2)
    t = 0.5
    n = 200_000
    g = torch.Generator().manual_seed(0)
    x0, x1 = field.source.sample(n, generator=g), field.target.sample(n, generator=g)
    z = torch.randn(n, 2, dtype=torch.float64, generator=g)
    xt = field.interpolant.sample(x0, x1, torch.full((n,), t, dtype=torch.float64), z=z).x_t
    # The mean of the score under p_t is zero and E[x . s] = -d (integration by parts).
    s = field.score(xt, torch.tensor(t, dtype=torch.float64))
    assert s.mean(0).abs().max() < 0.02
    assert abs(float((xt * s).sum(1).mean()) + 2.0) < 0.05


def test_per_sample_times_match_scalar_times_and_ends_are_finite():
    field, x = _field(3), _points(3)
    for t in (0.0, 0.37, 1.0):
        scalar = field.velocity(x, torch.tensor(t, dtype=torch.float64))
        batched = field.velocity(x, torch.full((x.shape[0],), t, dtype=torch.float64))
        torch.testing.assert_close(batched, scalar, rtol=1e-12, atol=1e-12)
        assert torch.isfinite(scalar).all() and torch.isfinite(field.score(x, torch.tensor(t, dtype=torch.float64))).all()


def test_bad_input():
    with pytest.raises(ValueError, match="same dimension"):
        GaussianMixtureInterpolantField(ring_mixture(2), ring_mixture(3))
    with pytest.raises(TypeError, match="GaussianMixture"):
        GaussianMixtureInterpolantField(ring_mixture(2), "target")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="features per sample"):
        _field(2).velocity(torch.zeros(4, 3, dtype=torch.float64), torch.tensor(0.5))
    assert math.isfinite(float(_field(2).log_prob(torch.zeros(1, 2, dtype=torch.float64), 0.5)))
