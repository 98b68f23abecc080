import pytest
import torch

from flowbridge.analytic import GaussianMixture
from flowbridge.fields import AutoGuidanceField, CFGField, NetworkField
from flowbridge.paths import GaussianPath, VPSchedule
from tests.conftest import ring_mixture


class NoiseNet(torch.nn.Module):
    """Wraps an exact field's noise prediction as a 'network', to test NetworkField's conversions."""

    def __init__(self, field):
        super().__init__()
        self.field = field

    def forward(self, x, t, y=None):
        assert t.shape == (x.shape[0],), "networks always receive t of shape (B,)"
        return self.field.noise(x, t)


def test_network_field_converts_every_parametrisation():
    path = GaussianPath(VPSchedule())
    exact = ring_mixture(3).field(path)
    net_field = NetworkField(NoiseNet(exact), path, "noise")
    x = torch.randn(16, 3, dtype=torch.float64)
    t = torch.tensor(0.6, dtype=torch.float64)
    for name in ("velocity", "data", "noise", "score"):
        torch.testing.assert_close(getattr(net_field, name)(x, t), getattr(exact, name)(x, t), rtol=1e-9, atol=1e-9)
    eps = torch.tensor(0.3, dtype=torch.float64)
    torch.testing.assert_close(net_field.sde_drift(x, t, eps), exact.velocity(x, t) + eps * exact.score(x, t))


def _component(gm: GaussianMixture, k: int) -> GaussianMixture:
    return GaussianMixture(torch.ones(1, dtype=gm.means.dtype), gm.means[k : k + 1], gm.covs[k : k + 1])


def test_cfg_is_the_same_extrapolation_in_every_parametrisation():
    path = GaussianPath("linear")
    gm = ring_mixture(2)
    cond, uncond = _component(gm, 0).field(path), gm.field(path)
    x = torch.randn(8, 2, dtype=torch.float64)
    t = torch.tensor(0.4, dtype=torch.float64)
    w = 3.0
    guided = CFGField(cond, uncond, w)
    v = guided.velocity(x, t)
    torch.testing.assert_close(v, uncond.velocity(x, t) + w * (cond.velocity(x, t) - uncond.velocity(x, t)))
    # Converting the guided data prediction must give the guided velocity.
    torch.testing.assert_close(path.convert(guided.data(x, t), "data", "velocity", x, t), v, rtol=1e-9, atol=1e-9)
    # w = 1 is the conditional field; w = 0 the unconditional one.
    torch.testing.assert_close(CFGField(cond, uncond, 1.0).score(x, t), cond.score(x, t))
    torch.testing.assert_close(AutoGuidanceField(cond, uncond, 0.0).noise(x, t), uncond.noise(x, t))


def test_guidance_of_fields_on_different_paths_is_refused():
    gm = ring_mixture(2)
    with pytest.raises(ValueError, match="share one path"):
        CFGField(gm.field("linear"), gm.field("vp"), 2.0)


def test_field_without_gaussian_path_refuses_conversions():
    field = NetworkField(torch.nn.Linear(2, 2), None, "velocity")
    with pytest.raises(TypeError, match="has no Gaussian path"):
        field.score(torch.zeros(3, 2), torch.tensor(0.5))
