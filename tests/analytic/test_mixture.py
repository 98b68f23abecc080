import pytest
import torch

from flowbridge.analytic import GaussianMixture, gaussian_flow_map
from flowbridge.paths import GaussianPath, VESchedule, VPSchedule
from tests.conftest import ring_mixture

PATHS = [GaussianPath("linear"), GaussianPath("trig"), GaussianPath(VPSchedule()), GaussianPath(VPSchedule(kind="cosine")), GaussianPath(VESchedule(sigma_max=20.0))]


@pytest.mark.parametrize("path", PATHS, ids=["linear", "trig", "vp", "vp_cosine", "ve"])
@pytest.mark.parametrize("d", [2, 5])
def test_exact_score_is_gradient_of_noised_log_prob(path, d):
    gm = ring_mixture(d)
    f = gm.field(path)
    g = torch.Generator().manual_seed(d)
    t = torch.rand(32, generator=g, dtype=torch.float64) * (min(path.t_max, 0.98) - max(path.t_min, 0.02)) + max(path.t_min, 0.02)
    x = (torch.randn(32, d, generator=g, dtype=torch.float64) * 2).requires_grad_(True)
    (grad,) = torch.autograd.grad(gm.log_prob_t(x, t, path).sum(), x)
    torch.testing.assert_close(f.score(x, t), grad, rtol=1e-9, atol=1e-9)
    # The posterior means are consistent with x_t = alpha x1_hat + sigma x0_hat.
    c = path.coefficients(t, x)
    torch.testing.assert_close(c.alpha * f.data(x, t) + c.sigma * f.noise(x, t), x.detach(), rtol=1e-9, atol=1e-9)


def test_log_prob_matches_torch_distributions(mixture2d):
    x = mixture2d.sample(100, generator=torch.Generator().manual_seed(0))
    mix = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(mixture2d.weights),
        torch.distributions.MultivariateNormal(mixture2d.means, mixture2d.covs),
    )
    torch.testing.assert_close(mixture2d.log_prob(x), mix.log_prob(x), rtol=1e-10, atol=1e-10)


def test_sample_moments_within_monte_carlo_error():
    gm = ring_mixture(3)
    x = gm.sample(200_000, generator=torch.Generator().manual_seed(3))
    se = gm.covariance().diag().sqrt() / 200_000**0.5
    assert ((x.mean(0) - gm.mean()).abs() < 4 * se).all()
    torch.testing.assert_close(torch.cov(x.T), gm.covariance(), rtol=0.02, atol=0.02)


def test_single_gaussian_flow_map_is_exact():
    gm = ring_mixture(3, k=1)
    path = GaussianPath(VPSchedule())
    x = torch.randn(8, 3, dtype=torch.float64)
    y = gaussian_flow_map(gm.means[0], gm.covs[0], path, x, 0.1, 0.9)
    # Differentiate the map in its end time: it must solve the PF-ODE of the exact field.
    h = 1e-6
    dy = (gaussian_flow_map(gm.means[0], gm.covs[0], path, x, 0.1, 0.9 + h) - gaussian_flow_map(gm.means[0], gm.covs[0], path, x, 0.1, 0.9 - h)) / (2 * h)
    torch.testing.assert_close(dy, gm.field(path).velocity(y, torch.tensor(0.9, dtype=torch.float64)), rtol=1e-6, atol=1e-6)


def test_field_is_regular_at_the_linear_endpoints(mixture2d):
    f = mixture2d.field("linear")
    x = torch.randn(16, 2, dtype=torch.float64)
    for t in (0.0, 1.0):
        v = f.velocity(x, torch.tensor(t, dtype=torch.float64))
        assert torch.isfinite(v).all()
    torch.testing.assert_close(f.data(x, torch.tensor(1.0, dtype=torch.float64)), x)
    torch.testing.assert_close(f.data(x, torch.tensor(0.0, dtype=torch.float64)), mixture2d.mean().expand(16, 2))


def test_validation_errors():
    means = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="sum to 1"):
        GaussianMixture(torch.tensor([0.5, 0.6]), means, torch.ones(2))
    with pytest.raises(ValueError, match="positive definite"):
        GaussianMixture(torch.tensor([0.5, 0.5]), means, torch.tensor([[[1.0, 2.0], [2.0, 1.0]]] * 2))
    with pytest.raises(ValueError, match="weights must have shape"):
        GaussianMixture(torch.tensor([1.0]), means, torch.ones(2))
    with pytest.raises(ValueError, match="covs must have shape"):
        GaussianMixture(torch.tensor([0.5, 0.5]), means, torch.ones(3, 3))
    with pytest.raises(ValueError, match="features per sample"):
        ring_mixture(2).field("linear").velocity(torch.zeros(3, 5, dtype=torch.float64), torch.tensor(0.5))
