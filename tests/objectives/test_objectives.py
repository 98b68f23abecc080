"""Objectives against ground truth: the exact field minimises each loss, and the excess loss of a
shifted field equals its squared distance to the exact one (Pythagoras for conditional expectations)."""

import pytest
import torch

from flowbridge.fields import Field
from flowbridge.objectives import DenoisingScoreMatching, FlowMatching, InterpolantObjective
from flowbridge.paths import GaussianPath, StochasticInterpolant, VESchedule, VPSchedule
from tests.conftest import ring_mixture

N = 200_000


class ShiftedField(Field):
    """An exact field plus a constant in its native parametrisation (a controlled model error)."""

    def __init__(self, exact, shift, native):
        super().__init__(exact.path, native)
        self.exact, self.shift = exact, shift

    def predict(self, x, t):
        return getattr(self.exact, self.parametrisation)(x, t) + self.shift


class Reparametrised(Field):
    """The same field as ``inner`` expressed in another parametrisation."""

    def __init__(self, inner, native):
        super().__init__(inner.path, native)
        self.inner = inner

    def predict(self, x, t):
        return self.path.convert(self.inner.predict(x, t), self.inner.parametrisation, self.parametrisation, x, t)


def _batch(gm, path, seed, n=N):
    g = torch.Generator().manual_seed(seed)
    x1 = gm.sample(n, generator=g)
    x0 = torch.randn(n, gm.dim, generator=g, dtype=torch.float64)
    t = torch.rand(n, generator=g, dtype=torch.float64) * (path.t_max - path.t_min - 0.02) + path.t_min + 0.01
    return x0, x1, t


def test_flow_matching_excess_loss_is_distance_to_exact_velocity():
    gm, path = ring_mixture(2), GaussianPath("linear")
    exact = gm.field(path)
    x0, x1, t = _batch(gm, path, 0)
    shift = torch.tensor([0.3, -0.2], dtype=torch.float64)
    zero = torch.zeros(2, dtype=torch.float64)
    base = FlowMatching(path)(ShiftedField(exact, zero, "velocity"), x0, x1, t).loss
    shifted = FlowMatching(path)(ShiftedField(exact, shift, "velocity"), x0, x1, t).loss
    # E|v + c - target|^2 - E|v - target|^2 = |c|^2 since E[target - v | x_t] = 0 (mean over 2 features).
    assert abs(float(shifted - base) - float((shift**2).mean())) < 0.005


@pytest.mark.parametrize("param", ["noise", "data", "score"])
@pytest.mark.parametrize("weighting", ["uniform", "edm"])
def test_exact_field_minimises_score_matching(param, weighting):
    path = GaussianPath(VPSchedule()) if weighting == "uniform" else GaussianPath(VESchedule(sigma_max=5.0))
    gm = ring_mixture(2)
    exact = gm.field(path)
    x0, x1, t = _batch(gm, path, 1)
    obj = DenoisingScoreMatching(path, weighting=weighting)
    base = float(obj(ShiftedField(exact, torch.zeros(2, dtype=torch.float64), param), x0, x1, t).loss)
    for shift in (0.02, -0.02):
        c = torch.tensor([shift, -shift], dtype=torch.float64)
        assert float(obj(ShiftedField(exact, c, param), x0, x1, t).loss) > base


def test_edm_weighting_does_not_depend_on_the_parametrisation():
    """EDM's weight is on the data error: one field expressed as data, noise or score prediction
    must give the same per-sample loss."""
    path = GaussianPath(VESchedule(sigma_max=5.0))
    gm = ring_mixture(2)
    model = ShiftedField(gm.field(path), torch.tensor([0.1, 0.2], dtype=torch.float64), "data")
    x0, x1, t = _batch(gm, path, 2, n=1000)
    obj = DenoisingScoreMatching(path, weighting="edm")
    as_data = obj(model, x0, x1, t).per_sample
    for native in ("noise", "score"):
        torch.testing.assert_close(obj(Reparametrised(model, native), x0, x1, t).per_sample, as_data, rtol=1e-8, atol=1e-10)


def test_interpolant_objective_is_minimised_by_the_true_conditional_means():
    """With x0 and x1 point masses the drift and denoiser are known in closed form."""
    si = StochasticInterpolant(gamma="quadratic", gamma_scale=1.0)
    n = 4096
    x0 = torch.full((n, 1), -1.0, dtype=torch.float64)
    x1 = torch.full((n, 1), 2.0, dtype=torch.float64)
    t = torch.rand(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.9 + 0.05

    def drift(x, tt):  # x_t = -(1-t) + 2t + g z, so E[z|x] = (x - 3t + 1)/g
        g, dg = tt * (1 - tt), 1 - 2 * tt
        return 3.0 + dg[:, None] * (x - 3 * tt[:, None] + 1) / g[:, None]

    def denoiser(x, tt):
        return (x - 3 * tt[:, None] + 1) / (tt * (1 - tt))[:, None]

    from flowbridge.fields import InterpolantField

    exact = InterpolantField(drift, denoiser, si)
    out = InterpolantObjective(si)(exact, x0, x1, t, generator=torch.Generator().manual_seed(1))
    assert float(out.loss) < 1e-20
    off = InterpolantField(lambda x, tt: drift(x, tt) + 0.1, denoiser, si)
    assert abs(float(InterpolantObjective(si)(off, x0, x1, t).terms["drift"]) - 0.01) < 1e-12


def test_objective_validation():
    with pytest.raises(ValueError, match="known weightings: uniform, edm"):
        DenoisingScoreMatching("vp", weighting="snr")
    with pytest.raises(ValueError, match="sigma_data must be > 0"):
        DenoisingScoreMatching("vp", sigma_data=0.0)
    with pytest.raises(TypeError, match="trains an InterpolantField"):
        InterpolantObjective(StochasticInterpolant())(ring_mixture(2).field("linear"), torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(2))
