"""Time samplers and EDM preconditioning against their defining formulas."""

from __future__ import annotations

import math

import pytest
import torch

from flowbridge.fields.edm import EDMPreconditioner
from flowbridge.paths import GaussianPath, StochasticInterpolant, VESchedule, VPSchedule
from flowbridge.training import LogitNormalTime, LogNormalNoiseTime, UniformTime


def _draw(sampler, path, n=200_000):
    return sampler(n, path, generator=torch.Generator().manual_seed(0), device=torch.device("cpu"), dtype=torch.float64)


def test_uniform_time_covers_the_path_interval_with_margin() -> None:
    path = GaussianPath(VPSchedule())
    t = _draw(UniformTime(), path)
    assert float(t.min()) >= path.t_min and float(t.max()) <= path.t_max
    assert float(t.mean()) == pytest.approx((path.t_min + path.t_max) / 2, abs=3e-3)
    t = _draw(UniformTime(margin=0.1), StochasticInterpolant())
    assert float(t.min()) >= 0.1 and float(t.max()) <= 0.9


def test_logit_normal_time_has_the_right_logit_moments() -> None:
    t = _draw(LogitNormalTime(mean=0.5, std=0.8), GaussianPath("linear"))
    logit = torch.log(t / (1 - t))
    assert float(logit.mean()) == pytest.approx(0.5, abs=0.01) and float(logit.std()) == pytest.approx(0.8, abs=0.01)


def test_lognormal_noise_time_gives_edm_noise_levels() -> None:
    path = GaussianPath(VESchedule(sigma_min=1e-4, sigma_max=1e4))  # wide enough that clamping is negligible
    t = _draw(LogNormalNoiseTime(p_mean=-1.2, p_std=1.2), path)
    c = path.schedule(t)
    log_sigma_bar = torch.log(c.sigma / c.alpha)
    assert float(log_sigma_bar.mean()) == pytest.approx(-1.2, abs=0.01)
    assert float(log_sigma_bar.std()) == pytest.approx(1.2, abs=0.01)
    with pytest.raises(TypeError, match="GaussianPath"):
        _draw(LogNormalNoiseTime(), StochasticInterpolant())


def test_edm_preconditioner_matches_the_formula_on_a_vp_path() -> None:
    path = GaussianPath(VPSchedule())

    class Raw(torch.nn.Module):
        def forward(self, x, t):
            return torch.sin(x) + t[:, None]

    wrapped = EDMPreconditioner(Raw(), path, sigma_data=0.5)
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.rand(5, generator=g, dtype=torch.float64) * 0.9
    c = path.schedule(t)
    sb, xb = (c.sigma / c.alpha)[:, None], x / c.alpha[:, None]
    total = torch.sqrt(sb**2 + 0.25)
    expected = 0.25 / total**2 * xb + sb * 0.5 / total * (torch.sin(xb / total) + t[:, None])
    torch.testing.assert_close(wrapped(x, t), expected)
    # At vanishing noise the denoiser returns its input (c_skip -> 1, c_out -> 0).
    tiny = GaussianPath(VESchedule(sigma_min=1e-6, sigma_max=1.0))
    near = EDMPreconditioner(Raw(), tiny, 0.5)(x, torch.ones(5, dtype=torch.float64))
    torch.testing.assert_close(near, x, atol=1e-5, rtol=0)
    assert math.isclose(EDMPreconditioner(Raw(), path).sigma_data, 0.5)
