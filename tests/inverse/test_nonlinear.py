"""Acceptance 3: a nonlinear black-box forward model (y = |Ax|^2 under no_grad), truth by quadrature."""

from __future__ import annotations

import math

import pytest
import torch

from flowbridge.analytic import GaussianMixture
from flowbridge.inverse import Gaussian, Lambda, Measurement, sample
from flowbridge.metrics import compare_to_truth, sliced_wasserstein
from flowbridge.random import rand

MATRIX = torch.tensor([[1.0, 0.3], [0.0, 0.5]], dtype=torch.float64)


def _problem() -> tuple[GaussianMixture, Measurement]:
    angles = torch.arange(4, dtype=torch.float64) * (math.pi / 2) + 0.3
    means = 3.0 * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    rot = torch.tensor([[1.0, 0.0], [0.4, 0.6]], dtype=torch.float64)
    prior = GaussianMixture(torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64), means, (0.25 * rot @ rot.T).expand(4, 2, 2).clone())
    operator = Lambda(lambda x: ((x @ MATRIX.to(x).T) ** 2).sum(-1, keepdim=True), input_shape=(2,), differentiable=False)
    return prior, Measurement(torch.tensor([2.5], dtype=torch.float64), operator, Gaussian(0.5))


def _quadrature(prior: GaussianMixture, meas: Measurement, lim: float = 7.0, size: int = 500):  # type: ignore[no-untyped-def]
    edges = torch.linspace(-lim, lim, size + 1, dtype=torch.float64)
    h = float(edges[1] - edges[0])
    centers = 0.5 * (edges[1:] + edges[:-1])
    grid = torch.cartesian_prod(centers, centers)
    cdf = torch.cumsum(torch.softmax(prior.log_prob(grid) + meas.log_likelihood(grid), 0), 0)

    def draw(n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        idx = torch.searchsorted(cdf, rand((n,), generator=generator, dtype=torch.float64) * cdf[-1]).clamp_(max=cdf.numel() - 1)
        return grid[idx] + (rand((n, 2), generator=generator, dtype=torch.float64) - 0.5) * h

    return draw


def _ratio(method: str, n: int, **opts: object) -> float:
    prior, meas = _problem()
    out = sample(prior.field("vp"), meas, method, num_samples=n, generator=torch.Generator().manual_seed(1), **opts)
    report = compare_to_truth(out.samples, _quadrature(prior, meas), sliced_wasserstein, sets=5,
                              generator=torch.Generator().manual_seed(2), n_projections=100)
    print(f"{method}: {report}")
    return report.ratio


def test_gradient_samplers_refuse_the_black_box() -> None:
    prior, meas = _problem()
    for method in ("dps", "tds", "pigdm"):
        with pytest.raises(TypeError, match="differentiable=False|linear"):
            sample(prior.field("vp"), meas, method, num_samples=2, steps=3, particles=4 if method == "tds" else None)
    with pytest.raises(TypeError, match="mcmc='metropolis'"):
        sample(prior.field("vp"), meas, "daps", num_samples=2, steps=3, mcmc="langevin")


def test_ensemble_matches_quadrature_within_twice_the_noise_floor() -> None:
    assert _ratio("ensemble", 500, steps=50, particles=32) < 2.0


@pytest.mark.slow
@pytest.mark.parametrize("method,opts", [
    ("ensemble", dict(steps=100, particles=64)),
    ("ensemble", dict(steps=100, particles=64, guidance_scale=0.0)),
])
def test_derivative_free_samplers_match_quadrature(method: str, opts: dict) -> None:
    """The asymptotically exact forward-only sampler (measured 1.68 guided, 1.43 unguided at n = 2000)."""
    assert _ratio(method, 2000, **opts) < 2.0


def test_localized_enkg_matches_quadrature_within_twice_the_noise_floor() -> None:
    """A global linearisation of the even map |Ax|^2 averages opposite slopes of members in opposite
    modes; the kernel-localised one does not (measured 1.94 against 2.36 for the global update)."""
    localized = _ratio("enkg", 1000, steps=100, particles=32)
    global_ = _ratio("enkg", 1000, steps=100, particles=32, localization=None)
    assert localized < 2.0 and localized < 0.9 * global_, (localized, global_)


@pytest.mark.slow
@pytest.mark.parametrize("method,opts", [
    ("enkg", dict(steps=100, particles=64)),
    ("daps", dict(steps=20, ode_steps=5, mcmc="metropolis")),
])
def test_approximate_derivative_free_samplers_are_recorded(method: str, opts: dict) -> None:
    """EnKG and DAPS are approximate: a fixed bias, so the ratio grows with n as the floor shrinks.

    Measured at n = 2000: enkg 2.57 (3.07 with the global update), daps 2.32. At n = 1000 in
    experiments/nonlinear_derivative_free.py see experiments/results/inverse_nonlinear.md. Bounded loosely."""
    assert _ratio(method, 2000, **opts) < 4.0
