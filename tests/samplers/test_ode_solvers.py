"""ODE solvers against exact flow maps and exact samples."""

import math

import pytest
import torch

import flowbridge as fb
from flowbridge.analytic import gaussian_flow_map
from flowbridge.metrics import sliced_wasserstein
from flowbridge.metrics.quality import compare_to_truth
from flowbridge.paths import GaussianPath, VPSchedule
from flowbridge.samplers import SOLVERS, make_grid
from tests.conftest import ring_mixture


def _order(errors: list[float], steps: list[int]) -> float:
    """Least-squares slope of log(error) against log(1/steps)."""
    x = torch.log(torch.tensor([1.0 / n for n in steps], dtype=torch.float64))
    y = torch.log(torch.tensor(errors, dtype=torch.float64))
    xc = x - x.mean()
    return float((xc * (y - y.mean())).sum() / (xc * xc).sum())


@pytest.mark.parametrize(
    "solver,expected", [("euler", 1), ("heun", 2), ("midpoint", 2), ("rk4", 4)]
)
@pytest.mark.parametrize("path", [GaussianPath("trig"), GaussianPath(VPSchedule())], ids=["trig", "vp"])
def test_empirical_convergence_order_on_closed_form_gaussian(solver, expected, path):
    """Orders in the asymptotic range (32-256 steps). Not the linear path: there the Gaussian
    PF-ODE has a symmetry under which midpoint is superconvergent (measured order 3.0)."""
    steps = [32, 64, 128, 256]
    gm = ring_mixture(3, k=1)
    field = gm.field(path)
    x0 = torch.randn(64, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t0, t1 = path.t_min, path.t_max
    exact = gaussian_flow_map(gm.means[0], gm.covs[0], path, x0, t0, t1)
    errors = [float((fb.sample(field, solver, n, x0=x0).x - exact).abs().max()) for n in steps]
    assert abs(_order(errors, steps) - expected) <= 0.3, (solver, errors)


def test_dopri5_reaches_tolerance_and_counts_nfe():
    gm = ring_mixture(3, k=1)
    path = GaussianPath("linear")
    x0 = torch.randn(16, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = fb.sample(gm.field(path), "dopri5", 1, x0=x0, rtol=1e-10, atol=1e-10)
    exact = gaussian_flow_map(gm.means[0], gm.covs[0], path, x0, 0.0, 1.0)
    assert float((out.x - exact).abs().max()) < 1e-8
    assert out.nfe > 6 and out.nfe % 6 in (0, 1, 2)  # dopri5 uses 6 evaluations per attempted step (+ initial)


@pytest.mark.parametrize("d", [2, 16])
@pytest.mark.parametrize("solver,steps", [("dopri5", 1), ("heun", 200)])
def test_exact_velocity_transports_noise_to_mixture(d, solver, steps):
    gm = ring_mixture(d)
    n, sets = 2000, 5
    g = torch.Generator().manual_seed(10 + d)
    out = fb.sample(gm.field("linear"), solver, steps, shape=(n * sets, d), generator=g, dtype=torch.float64)
    report = compare_to_truth(out.x, gm.sample, sliced_wasserstein, sets=sets, generator=torch.Generator().manual_seed(5))
    assert report.ratio <= 1.5, str(report)


def test_a_wrong_field_fails_the_noise_floor_criterion():
    """The criterion above can fail: a mixture with slightly shifted means is detected."""
    gm, d, n = ring_mixture(2), 2, 2000
    wrong = fb.GaussianMixture(gm.weights, gm.means * 1.1, gm.covs)
    out = fb.sample(wrong.field("linear"), "heun", 50, shape=(5 * n, d), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    report = compare_to_truth(out.x, gm.sample, sliced_wasserstein, sets=5, generator=torch.Generator().manual_seed(5))
    assert report.ratio > 1.5, str(report)


@pytest.mark.parametrize("name", ["uniform", "quadratic", "logsnr", "karras"])
@pytest.mark.parametrize("schedule", ["linear", "vp", "ve"])
def test_grids_are_monotone_and_in_span(name, schedule):
    path = GaussianPath(schedule)
    grid = make_grid(name, 10, path.t_min, path.t_max, path.schedule)
    assert grid.shape == (11,) and grid.dtype == torch.float64
    assert (grid[1:] > grid[:-1]).all()
    assert grid[0] >= path.t_min - 1e-12 and grid[-1] <= path.t_max + 1e-12


def test_karras_grid_matches_edm_sigmas_on_ve():
    path = GaussianPath("ve")
    grid = make_grid("karras", 18, 0.0, 1.0, path.schedule, rho=7.0)
    sig = path.schedule(grid).sigma
    i = torch.arange(19, dtype=torch.float64)
    edm = (80 ** (1 / 7) + i / 18 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    torch.testing.assert_close(sig, edm, rtol=1e-10, atol=1e-12)


def test_trajectory_and_progress(mixture2d):
    out = fb.sample(mixture2d.field("linear"), "euler", 5, shape=(4, 2), return_trajectory=True, progress=True, dtype=torch.float64)
    assert out.trajectory.shape == (6, 4, 2) and out.times.shape == (6,)
    torch.testing.assert_close(out.trajectory[-1], out.x)
    assert out.nfe == 5


def test_every_registered_solver_runs_and_reports_nfe(mixture2d):
    ran = 0
    for name, cls in SOLVERS.items():
        field = mixture2d.field("vp")
        try:
            fb.get_solver(name).check(field, max(cls.min_steps, 10))
        except (TypeError, ValueError):
            continue  # solvers for other kinds of field (e.g. bridges) refuse clearly in check()
        ran += 1
        out = fb.sample(field, name, max(cls.min_steps, 10), shape=(8, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        assert torch.isfinite(out.x).all() and out.nfe >= 1, name
    assert ran >= 6
