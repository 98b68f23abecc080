"""Bad input fails clearly; no sample's guidance depends on another sample (or group) in the batch."""

from __future__ import annotations

import pytest
import torch

from flowbridge.analytic import GaussianMixture
from flowbridge.inverse import POSTERIOR_SAMPLERS, Gaussian, Lambda, MatrixOperator, Measurement, Poisson, sample


def _problem() -> tuple[object, Measurement]:
    g = torch.Generator().manual_seed(0)
    prior = GaussianMixture(
        torch.tensor([0.3, 0.7], dtype=torch.float64),
        torch.tensor([[-2.0, 0.0, 1.0], [2.0, 1.0, 0.0]], dtype=torch.float64),
        torch.tensor([0.5, 1.0], dtype=torch.float64),
    )
    a = torch.randn(2, 3, generator=g, dtype=torch.float64)
    y = a @ torch.tensor([2.0, 1.0, 0.0], dtype=torch.float64)
    return prior.field("vp"), Measurement(y, MatrixOperator(a), Gaussian(0.3))


def test_y_with_the_wrong_shape_is_refused() -> None:
    with pytest.raises(ValueError, match=r"y must have shape \(2,\)"):
        Measurement(torch.zeros(3), MatrixOperator(torch.randn(2, 3)), Gaussian(0.1))
    with pytest.raises(ValueError, match="finite"):
        Measurement(torch.tensor([0.0, float("nan")]), MatrixOperator(torch.randn(2, 3)), Gaussian(0.1))


def test_requirements_are_checked_before_sampling() -> None:
    field, meas = _problem()
    black_box = Lambda(lambda x: x[:, :2] ** 2, input_shape=(3,), differentiable=False)
    nonlinear = Measurement(torch.zeros(2, dtype=torch.float64), black_box, Gaussian(0.3))
    with pytest.raises(TypeError, match="differentiable=False.*derivative-free samplers that apply: .*ensemble"):
        sample(field, nonlinear, "dps", num_samples=2, steps=3)
    for method in ("ddrm", "mcgdiff", "pigdm", "dds"):
        with pytest.raises(TypeError, match="linear"):
            sample(field, nonlinear, method, num_samples=2, steps=3, particles=4 if method == "mcgdiff" else None)
    poisson = Measurement(meas.y.abs(), meas.operator, Poisson(10.0))
    with pytest.raises(TypeError, match="Gaussian observation noise"):
        sample(field, poisson, "ddrm", num_samples=2, steps=3)
    with pytest.raises(ValueError, match="unknown posterior sampler 'nope'"):
        sample(field, meas, "nope")


@pytest.mark.parametrize("method", ["mcgdiff", "tds", "ensemble", "enkg"])
@pytest.mark.parametrize("particles", [0, 1, 1.5])
def test_particle_counts_below_two_are_refused(method: str, particles: object) -> None:
    field, meas = _problem()
    with pytest.raises(ValueError, match="particles must be an integer >= 2"):
        sample(field, meas, method, num_samples=2, steps=3, particles=particles)  # type: ignore[arg-type]


def test_bad_num_samples_steps_and_x_init() -> None:
    field, meas = _problem()
    with pytest.raises(ValueError, match="num_samples"):
        sample(field, meas, "ddrm", num_samples=0)
    with pytest.raises(ValueError, match="steps"):
        sample(field, meas, "ddrm", num_samples=2, steps=0)
    with pytest.raises(ValueError, match="x0 \\(x_init\\) must have shape"):
        sample(field, meas, "ddrm", num_samples=2, steps=3, x_init=torch.zeros(3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="does not use particles"):
        sample(field, meas, "ddrm", num_samples=2, steps=3, particles=8)


@pytest.mark.parametrize("method", sorted(POSTERIOR_SAMPLERS))
def test_no_sample_depends_on_another_sample_in_the_batch(method: str) -> None:
    """Changing the starting noise of every other sample (group) leaves sample 0 bit-for-bit unchanged."""
    field, meas = _problem()
    particles = 4 if POSTERIOR_SAMPLERS[method].uses_particles else None
    p = particles or 1
    groups = 3
    x_a = torch.randn(groups * p, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x_b = x_a.clone()
    x_b[p:] = 5.0 * torch.randn(x_b[p:].shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    n = groups * p if method == "enkg" else groups
    outs = [
        sample(field, meas, method, num_samples=n, steps=6, particles=particles, x_init=x,
               generator=torch.Generator().manual_seed(3))
        for x in (x_a, x_b)
    ]
    first = slice(0, p) if method == "enkg" else slice(0, 1)
    torch.testing.assert_close(outs[0].samples[first], outs[1].samples[first], rtol=0, atol=1e-12)
    assert (outs[0].samples[p if method == "enkg" else 1:] != outs[1].samples[p if method == "enkg" else 1:]).any()


def test_counters_and_particle_outputs() -> None:
    field, meas = _problem()
    out = sample(field, meas, "tds", num_samples=3, steps=5, particles=4, generator=torch.Generator().manual_seed(0))
    assert (out.counters.nfe, out.counters.network_backprops) == (5, 5)
    assert out.samples.shape == (3, 3) and out.particles.shape == (3, 4, 3) and out.log_weights.shape == (3, 4)
    torch.testing.assert_close(torch.logsumexp(out.log_weights, 1), torch.zeros(3, dtype=torch.float64))
    assert ((out.ess >= 1 - 1e-9) & (out.ess <= 4 + 1e-9)).all()
    ddrm = sample(field, meas, "ddrm", num_samples=3, steps=7, generator=torch.Generator().manual_seed(0))
    assert (ddrm.counters.nfe, ddrm.counters.network_backprops, ddrm.log_weights) == (7, 0, None)
