import itertools

import pytest
import torch

from flowbridge.paths import PARAMETRISATIONS, BrownianBridge, GaussianPath, StochasticInterpolant, VESchedule, VPSchedule

PATHS = [GaussianPath("linear"), GaussianPath("trig"), GaussianPath(VPSchedule()), GaussianPath(VPSchedule(kind="cosine")), GaussianPath(VESchedule())]


@pytest.mark.parametrize("path", PATHS, ids=lambda p: repr(p.schedule)[:20])
@pytest.mark.parametrize("source,target", list(itertools.permutations(PARAMETRISATIONS, 2)))
def test_conversions_round_trip_float64(path, source, target):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=g, dtype=torch.float64)
    value = torch.randn(64, 3, generator=g, dtype=torch.float64)
    t = torch.linspace(max(path.t_min, 0.05), min(path.t_max, 0.95), 64, dtype=torch.float64)
    there = path.convert(value, source, target, x, t)
    back = path.convert(there, target, source, x, t)
    torch.testing.assert_close(back, value, rtol=1e-10, atol=1e-10)


def test_conversions_agree_with_conditional_sample():
    """For a single pair (x0, x1) the posterior means are x0 and x1 themselves: every target matches."""
    path = GaussianPath(VPSchedule())
    g = torch.Generator().manual_seed(1)
    x0, x1 = torch.randn(2, 16, 4, generator=g, dtype=torch.float64)
    t = torch.rand(16, generator=g, dtype=torch.float64) * 0.9 + 0.05
    s = path.sample(x0, x1, t)
    for p in PARAMETRISATIONS:
        assert torch.allclose(path.convert(path.target(s, "data"), "data", p, s.x_t, t), path.target(s, p), atol=1e-10)
    fd = (path.sample(x0, x1, t + 1e-6).x_t - path.sample(x0, x1, t - 1e-6).x_t) / 2e-6
    torch.testing.assert_close(s.dx_t, fd, rtol=1e-6, atol=1e-6)


def test_unknown_parametrisation_and_shape_errors():
    path = GaussianPath("linear")
    x = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="known parametrisations"):
        path.convert(x, "eps", "data", x, 0.5)
    with pytest.raises(ValueError, match="same shape"):
        path.sample(torch.zeros(2, 2), torch.zeros(2, 3), torch.zeros(2))
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        path.sample(x, x, torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        StochasticInterpolant().sample(x, x, torch.tensor([-0.1, 0.5]), z=x)
    with pytest.raises(ValueError, match="t must be a scalar or have shape"):
        path.convert(x, "data", "noise", x, torch.zeros(5))


@pytest.mark.parametrize("gamma", ["sqrt", "quadratic", "sin2"])
def test_interpolant_endpoints_and_targets(gamma):
    si = StochasticInterpolant(gamma=gamma, gamma_scale=0.7)
    g = torch.Generator().manual_seed(2)
    x0, x1, z = torch.randn(3, 8, 2, generator=g, dtype=torch.float64)
    s0 = si.sample(x0, x1, torch.zeros(8, dtype=torch.float64), z=z)
    s1 = si.sample(x0, x1, torch.ones(8, dtype=torch.float64), z=z)
    torch.testing.assert_close(s0.x_t, x0)
    torch.testing.assert_close(s1.x_t, x1)
    t = torch.full((8,), 0.3, dtype=torch.float64)
    fd = (si.sample(x0, x1, t + 1e-6, z=z).x_t - si.sample(x0, x1, t - 1e-6, z=z).x_t) / 2e-6
    torch.testing.assert_close(si.sample(x0, x1, t, z=z).drift_target, fd, rtol=1e-6, atol=1e-6)


def test_brownian_bridge_is_sqrt_interpolant_and_validates():
    bb = BrownianBridge(sigma=0.5)
    x = torch.zeros(1, 1, dtype=torch.float64)
    assert abs(float(bb.coefficients(0.25, x).gamma) - 0.5 * (0.25 * 0.75) ** 0.5) < 1e-12
    with pytest.raises(ValueError, match="sigma must be > 0"):
        BrownianBridge(sigma=0.0)
    with pytest.raises(ValueError, match="known gammas"):
        StochasticInterpolant(gamma="cubic")
