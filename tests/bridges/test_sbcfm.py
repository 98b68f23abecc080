"""SB-CFM: entropic minibatch plans, the bridge drift, and transport of 8 Gaussians to two moons."""

from __future__ import annotations

import pytest
import torch

from flowbridge.bridges import SBCFM
from flowbridge.couplings import CouplingError
from flowbridge.metrics import compare_to_truth, sliced_wasserstein
from tests.bridges.toy import eight_gaussians, moons


def transport_ratio(
    steps: int, batch_size: int, hidden: int = 128, n: int = 2000, sets: int = 4, sde_steps: int = 100, seed: int = 0
) -> float:
    """Trains SB-CFM (sigma = 0.5) and returns sliced W of the SDE's endpoints over its noise floor."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # network initialisation
    x0, x1 = eight_gaussians(20_000, generator=g), moons(20_000, generator=g)
    model = SBCFM(2, sigma=0.5, hidden=hidden, depth=3)
    model.fit(x0, x1, steps=steps, batch_size=batch_size, lr=1e-3, generator=g)
    with torch.no_grad():
        y = model.sample(eight_gaussians(n * sets, generator=g), sde_steps, generator=g)
    report = compare_to_truth(y, moons, sliced_wasserstein, sets=sets, generator=g)
    return report.ratio


def test_sbcfm_transports_roughly_fast() -> None:
    # a short run already lands near the moons; the acceptance bound is in the slow test
    assert transport_ratio(steps=200, batch_size=128, hidden=64, n=1000, sets=2, sde_steps=50) < 4.0


@pytest.mark.slow
def test_sbcfm_transports_8gaussians_to_moons() -> None:
    assert transport_ratio(steps=2000, batch_size=256) < 2.0


def test_sinkhorn_overflow_raises_with_advice() -> None:
    g = torch.Generator().manual_seed(0)
    model = SBCFM(2, sigma=0.005, hidden=16, depth=1)  # reg = 5e-5 against costs ~10: exp(-C/reg) underflows
    with pytest.raises(CouplingError, match="raise reg"):
        model.fit(eight_gaussians(256, generator=g) * 3, moons(256, generator=g), steps=1, batch_size=128, generator=g)


def test_bridge_drift_combines_velocity_and_score() -> None:
    model = SBCFM(2, sigma=0.7, hidden=16, depth=1)
    field = model.bridge_field()
    x, t = torch.randn(5, 2), torch.full((5,), 0.3)
    expected = model.field.velocity(x, t) + 0.5 * 0.7**2 * model.field.score(x, t)
    assert torch.allclose(field.drift(x, t), expected, atol=1e-6)
    assert field.eps == pytest.approx(0.49)
    # regular at t = 0 (the score factor is clipped; the bridge pins nothing there)
    assert torch.isfinite(field.drift(x, 0.0)).all()


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="sigma"):
        SBCFM(2, sigma=0.0)
    with pytest.raises(ValueError, match="sigma"):
        SBCFM(2, sigma=-1.0)
    model = SBCFM(2, sigma=1.0, hidden=8, depth=1)
    with pytest.raises(ValueError, match="dimension"):
        model.fit(torch.randn(10, 2), torch.randn(10, 3), steps=1)
    with pytest.raises(ValueError, match="reg"):
        SBCFM(2, sigma=1.0, reg=0.0)


def test_log_domain_sinkhorn_handles_small_reg() -> None:
    g = torch.Generator().manual_seed(0)
    x0, x1 = eight_gaussians(32, generator=g) * 2, moons(32, generator=g)
    # where both work, the log-domain plan is the ordinary one
    plain, logd = SBCFM(2, sigma=0.5, sinkhorn_method="sinkhorn"), SBCFM(2, sigma=0.5, sinkhorn_method="sinkhorn_log")
    a, b = plain.coupling.plan(x0, x1), logd.coupling.plan(x0, x1)
    assert abs(a - b).max() < 0.02 * a.max()  # the two stop at different tolerances (1e-6, 1e-4)
    # reg = 0.02 against costs up to ~40: the ordinary kernel underflows, the log domain does not
    x0 = x0 * 1.5
    with pytest.raises(CouplingError, match="sinkhorn_log"):
        SBCFM(2, sigma=0.1, hidden=8, depth=1).loss(x0, x1, generator=g)
    small = SBCFM(2, sigma=0.1, hidden=8, depth=1, sinkhorn_method="sinkhorn_log")
    plan = small.coupling.plan(x0, x1)
    assert abs(plan.sum(1) - 1 / 32).max() < 1e-6
    assert torch.isfinite(small.loss(x0, x1, generator=g))
