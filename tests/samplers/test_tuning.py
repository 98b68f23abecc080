"""Tuned solvers (flowbridge.samplers.tuning) against exact Gaussian-mixture fields.

Ground truth: the exact field of a 2-D mixture on the VP path; endpoints of float64 dopri5 at
tolerance 1e-10 (its error, ~1e-9, is far below the errors compared). Improvements are judged on
noises used neither in training nor in validation, with the Monte-Carlo standard error of the paired
per-sample difference: a gain must exceed 5 of them.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import flowbridge as fb
from flowbridge.errors import ArgumentError, CapabilityError, ConfigError
from flowbridge.fields import InterpolantField
from flowbridge.paths import StochasticInterpolant
from flowbridge.samplers import get_solver, make_grid
from flowbridge.samplers.multistep.common import gaussian_grid
from flowbridge.samplers.tuning import TUNABLE, TunedSolver, run_tuned, tune
from tests.conftest import ring_mixture

D = 2


@pytest.fixture(scope="module")
def field():
    return ring_mixture(D).field("vp")


def logsnr_grid(field, solver: str, nfe: int) -> torch.Tensor:
    span = get_solver(solver).default_span(field)
    return make_grid("logsnr", nfe, *span, field.path.schedule)


def fresh_noises(field, n: int, seed: int, t0: float) -> torch.Tensor:
    noise = torch.randn(n, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return field.path.prior_sample((n, D), t0, noise=noise)




def reference(field, x0: torch.Tensor, t0: float, t1: float) -> torch.Tensor:
    return fb.sample(field, "dopri5", 1, x0=x0, grid=[t0, t1], rtol=1e-10, atol=1e-10).x


def errors(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return (x - ref).norm(dim=1)


@pytest.fixture(scope="module", params=[("dpmpp_2m", 5), ("dpmpp_2m", 8), ("plms", 5)], ids=lambda p: f"{p[0]}-nfe{p[1]}")
def tuned(request, field):
    solver, nfe = request.param
    return tune(field, solver, nfe, shape=(192, D), num_val=192, grid="logsnr", seed=0, max_iters=100, lr=0.03, patience=25)


def test_tuning_reduces_the_error_on_fresh_noises(field, tuned):
    grid = logsnr_grid(field, tuned.solver, tuned.steps)
    t0, t1 = float(grid[0]), float(grid[-1])
    x0 = fresh_noises(field, 1024, seed=99, t0=t0)
    ref = reference(field, x0, t0, t1)
    before = errors(fb.sample(field, tuned.solver, tuned.steps, x0=x0, grid="logsnr").x, ref)
    after = errors(tuned.sample(field, x0=x0).x, ref)
    diff = before - after
    stderr = float(diff.std()) / math.sqrt(diff.numel())
    assert float(diff.mean()) > 5 * stderr, (float(before.mean()), float(after.mean()), stderr)
    assert float(after.mean()) < 0.5 * float(before.mean()), (float(before.mean()), float(after.mean()))
    # The report's validation figures say the same (on other noises) and tell their own error.
    r = tuned.report
    assert r.tuned_error + 5 * r.tuned_stderr < r.untuned_error and r.best_iteration > 0


def test_tuned_grid_is_strictly_increasing_inside_the_span_with_the_same_nfe(field, tuned):
    init = logsnr_grid(field, tuned.solver, tuned.steps)
    g = tuned.grid
    assert g.dtype == torch.float64 and g.shape == (tuned.steps + 1,)
    assert bool((g[1:] > g[:-1]).all())
    assert g[0] == init[0] and g[-1] == init[-1]  # the ends are kept, inside the path's span
    assert field.path.t_min <= float(g[0]) and float(g[-1]) <= field.path.t_max
    assert not torch.equal(g, init)  # the interior moved
    out = tuned.sample(field, shape=(4, D), seed=1)
    assert out.nfe == tuned.steps


def test_iteration_zero_is_the_untuned_solver_exactly(field):
    for solver in ("dpmpp_2m", "plms"):
        t = tune(field, solver, 5, shape=(16, D), grid="logsnr", seed=0, max_iters=0)
        assert torch.equal(t.grid, logsnr_grid(field, solver, 5))
        assert all(m == 1.0 for row in t.options["weight_multipliers"] for m in row)
        x0 = fresh_noises(field, 32, seed=3, t0=float(t.grid[0]))
        assert torch.equal(t.sample(field, x0=x0).x, fb.sample(field, solver, 5, x0=x0, grid="logsnr").x)
        assert t.report.tuned_error == t.report.untuned_error and t.report.best_iteration == 0


@pytest.mark.parametrize("solver", TUNABLE)
def test_unit_multipliers_are_the_solver_and_the_differentiable_loop_matches_it(field, solver):
    nfe = 6
    grid = logsnr_grid(field, solver, nfe)
    base = get_solver(solver)
    rows = [[1.0] * len(p.weights) for p in base.plan(gaussian_grid(solver, field, grid, base.final_step))]
    x0 = fresh_noises(field, 16, seed=4, t0=float(grid[0]))
    plain = fb.sample(field, solver, nfe, x0=x0, grid="logsnr").x
    assert torch.equal(fb.sample(field, solver, nfe, x0=x0, grid=grid, weight_multipliers=rows).x, plain)
    torch.testing.assert_close(run_tuned(base, field, x0, grid, None), plain, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("solver", ["dpmpp_2m", "dpmpp_3m", "plms"])
def test_gradient_through_the_loop_matches_finite_differences(field, solver):
    """d(mean endpoint error)/d(interior time and multiplier): autograd against central differences
    (float64, step 1e-6: truncation ~1e-12 relative; rounding ~1e-10)."""
    nfe = 5
    grid = logsnr_grid(field, solver, nfe)
    base = get_solver(solver)
    lengths = [len(p.weights) for p in base.plan(gaussian_grid(solver, field, grid, base.final_step))]
    x0 = fresh_noises(field, 8, seed=5, t0=float(grid[0]))
    ref = reference(field, x0, float(grid[0]), float(grid[-1]))

    def loss(times: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        rows, k = [], 0
        for n in lengths:
            rows.append(list(m[k:k + n].unbind(0)))
            k += n
        return errors(run_tuned(base, field, x0, times, rows), ref).mean()

    times = grid.clone().requires_grad_(True)
    m = torch.ones(sum(lengths), dtype=torch.float64, requires_grad=True)
    g_t, g_m = torch.autograd.grad(loss(times, m), (times, m))
    h = 1e-6
    for k in (1, nfe // 2, nfe - 1):
        e = torch.zeros_like(grid)
        e[k] = h
        fd = (loss(grid + e, m.detach()) - loss(grid - e, m.detach())) / (2 * h)
        assert abs(float(fd) - float(g_t[k])) <= 1e-5 * abs(float(fd)) + 1e-8, (k, float(fd), float(g_t[k]))
    for k in (0, len(m) - 1):
        e = torch.zeros_like(m.detach())
        e[k] = h
        fd = (loss(grid, m.detach() + e) - loss(grid, m.detach() - e)) / (2 * h)
        assert abs(float(fd) - float(g_m[k])) <= 1e-5 * abs(float(fd)) + 1e-8, (k, float(fd), float(g_m[k]))


def test_yaml_preset_round_trips_bit_for_bit(field, tmp_path):
    t = tune(field, "dpmpp_2m", 5, shape=(64, D), grid="logsnr", seed=0, max_iters=15, lr=0.03)
    assert any(m != 1.0 for row in t.options["weight_multipliers"] for m in row)
    path = tmp_path / "tuned.yaml"
    t.save(path)
    back = TunedSolver.load(path)
    assert back == t
    assert torch.equal(back.grid.view(torch.int64), t.grid.view(torch.int64))
    for a, b in zip(back.options["weight_multipliers"], t.options["weight_multipliers"]):
        assert [float.hex(v) for v in a] == [float.hex(v) for v in b]
    x0 = fresh_noises(field, 16, seed=6, t0=float(t.grid[0]))
    assert torch.equal(back.sample(field, x0=x0).x, t.sample(field, x0=x0).x)
    with pytest.raises(ArgumentError, match="grid is fixed"):
        back.sample(field, x0=x0, grid="logsnr")
    text = path.read_text()
    assert "model:" in text and "sampler:" in text and "solver: dpmpp_2m" in text


def test_yaml_round_trip_of_awkward_floats():
    """Values whose YAML spelling is delicate (exponents without a dot, subnormals, 1 - 2^-53)."""
    g = torch.Generator().manual_seed(0)
    times = sorted({5e-324, 1e-05, 0.1 + 0.2, 1 - 2**-53, 1e-300, 0.5, *torch.rand(20, generator=g, dtype=torch.float64).tolist()})
    rows = [[1e-05, -0.0], [1e300, 5e-324], [float.fromhex("0x1.fffffffffffffp-1"), -1e-310]]
    grid = torch.tensor(times, dtype=torch.float64)
    t = TunedSolver("dpmpp_2m", len(times) - 1, grid, {"weight_multipliers": rows + [[1.0, 1.0]] * (len(times) - 4)})
    back = TunedSolver.from_yaml(t.to_yaml())
    assert back == t
    assert [[float.hex(v) for v in r] for r in back.options["weight_multipliers"]] == \
        [[float.hex(v) for v in r] for r in t.options["weight_multipliers"]]


@pytest.mark.parametrize(
    "nfe,match",
    [(1, r"nfe must be >= 2"), (0, r"nfe must be >= 2"), (5.0, "nfe must be an integer"), (True, "nfe must be an integer"),
     ("5", "nfe must be an integer")],
)
def test_bad_budgets_are_refused(field, nfe, match):
    with pytest.raises(ArgumentError, match=match):
        tune(field, "dpmpp_2m", nfe, shape=(8, D), seed=0)


def test_bad_solvers_fields_and_arguments_are_refused(field):
    with pytest.raises(ArgumentError, match="nfe must be >= 3"):
        tune(field, "dpmpp_3m", 2, shape=(8, D), seed=0)
    with pytest.raises(CapabilityError, match="cannot be tuned.*dpmpp_2m"):
        tune(field, "heun", 5, shape=(8, D), seed=0)
    with pytest.raises(ArgumentError, match="solver"):
        tune(field, "no_such_solver", 5, shape=(8, D), seed=0)
    interpolant = InterpolantField(nn.Linear(2, 2), None, StochasticInterpolant())
    with pytest.raises(CapabilityError, match="GaussianPath"):
        tune(interpolant, "dpmpp_2m", 5, shape=(8, D), seed=0)
    with pytest.raises(ArgumentError, match="field"):
        tune(torch.zeros(2), "dpmpp_2m", 5, shape=(8, D), seed=0)
    with pytest.raises(ArgumentError, match="shape"):
        tune(field, "dpmpp_2m", 5, shape=8, seed=0)
    with pytest.raises(ArgumentError, match="num_val"):
        tune(field, "dpmpp_2m", 5, shape=(8, D), num_val=1, seed=0)
    with pytest.raises(ArgumentError, match="nothing to tune"):
        tune(field, "dpmpp_2m", 5, shape=(8, D), seed=0, tune_grid=False, tune_coefficients=False)
    with pytest.raises(ArgumentError, match="lr"):
        tune(field, "dpmpp_2m", 5, shape=(8, D), seed=0, lr=-1.0)
    with pytest.raises(ArgumentError, match="max_iters"):
        tune(field, "dpmpp_2m", 5, shape=(8, D), seed=0, max_iters=2.5)
    with pytest.raises(ArgumentError, match="order"):
        tune(field, "plms", 5, shape=(8, D), seed=0, solver_options={"order": 7})
    with pytest.raises(ArgumentError, match="weight_multipliers row 1"):
        tune(field, "dpmpp_2m", 3, shape=(8, D), seed=0, solver_options={"weight_multipliers": [[1.0], [1.0], [1.0, 1.0]]})
    with pytest.raises(ArgumentError, match="dtype"):
        tune(field, "dpmpp_2m", 5, shape=(8, D), seed=0, dtype=torch.int64)
    with pytest.raises(ArgumentError, match="generator"):
        tune(field, "dpmpp_2m", 5, shape=(8, D), seed=0, generator=torch.Generator())


def test_only_the_grid_or_only_the_coefficients(field):
    init = logsnr_grid(field, "dpmpp_2m", 5)
    grid_only = tune(field, "dpmpp_2m", 5, shape=(32, D), grid="logsnr", seed=0, max_iters=10, lr=0.03, tune_coefficients=False)
    assert all(m == 1.0 for row in grid_only.options["weight_multipliers"] for m in row)
    coef_only = tune(field, "dpmpp_2m", 5, shape=(32, D), grid="logsnr", seed=0, max_iters=10, lr=0.03, tune_grid=False)
    assert torch.equal(coef_only.grid, init)
    # float32 states: the grid and the multipliers stay float64.
    single = tune(field, "plms", 5, shape=(32, D), grid="logsnr", seed=0, max_iters=5, lr=0.03, dtype=torch.float32)
    assert single.grid.dtype == torch.float64 and single.report.tuned_error <= single.report.untuned_error
    # A tuned result is a valid starting point (explicit grid and multipliers).
    again = tune(field, "dpmpp_2m", 5, shape=(32, D), grid=coef_only.grid, seed=0, max_iters=0,
                 solver_options={"weight_multipliers": coef_only.options["weight_multipliers"]})
    assert again == coef_only


def test_explicit_grids_in_sample_are_checked(field):
    grid = logsnr_grid(field, "dpmpp_2m", 4)
    x0 = torch.zeros(2, D, dtype=torch.float64)
    with pytest.raises(ArgumentError, match="steps must be len"):
        fb.sample(field, "dpmpp_2m", 5, x0=x0, grid=grid)
    with pytest.raises(ArgumentError, match="strictly increasing"):
        fb.sample(field, "dpmpp_2m", 4, x0=x0, grid=grid.flip(0))
    with pytest.raises(ArgumentError, match=r"\[0, 1\]"):
        fb.sample(field, "dpmpp_2m", 4, x0=x0, grid=[0.1, 0.2, 0.3, 0.4, 1.5])
    with pytest.raises(ArgumentError, match="t_span"):
        fb.sample(field, "dpmpp_2m", 4, x0=x0, grid=grid, t_span=(0.0, 0.5))
    with pytest.raises(ArgumentError, match="grid_options"):
        fb.sample(field, "dpmpp_2m", 4, x0=x0, grid=grid, grid_options={"rho": 7.0})
    with pytest.raises(ArgumentError, match="weight_multipliers has 2 rows"):
        fb.sample(field, "dpmpp_2m", 4, x0=x0, grid=grid, weight_multipliers=[[1.0], [1.0, 1.0]])
    with pytest.raises(ArgumentError, match="finite"):
        fb.sample(field, "dpmpp_2m", 4, x0=x0, grid=grid, weight_multipliers=[[math.nan]] * 4)
    with pytest.raises(ArgumentError, match="no option"):
        fb.sample(field, "unipc", 4, x0=x0, grid=grid, weight_multipliers=[[1.0]] * 4)
    # The same times as the registered grid give the same samples.
    assert torch.equal(fb.sample(field, "dpmpp_2m", 4, x0=x0, grid=grid).x, fb.sample(field, "dpmpp_2m", 4, x0=x0, grid="logsnr").x)


def test_bad_preset_files_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        TunedSolver.load(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="model: sampler"):
        TunedSolver.from_yaml("a: 1")
    with pytest.raises(ConfigError, match="grid"):
        TunedSolver.from_yaml("model:\n  sampler: {solver: ddim, steps: 2, grid: logsnr, options: {}}")
    with pytest.raises(ConfigError, match="steps must be len"):
        TunedSolver.from_yaml("model:\n  sampler: {solver: ddim, steps: 3, grid: [0.1, 0.5, 0.9], options: {}}")
    with pytest.raises(ConfigError, match="no option"):
        TunedSolver.from_yaml("model:\n  sampler: {solver: ddim, steps: 2, grid: [0.1, 0.5, 0.9], options: {nope: 1}}")


def test_minibatches_and_sparse_validation(field):
    t = tune(field, "dpmpp_2m", 5, shape=(128, D), num_val=64, grid="logsnr", seed=0, max_iters=12, lr=0.03,
             minibatch=32, validate_every=4)
    validated = [it for it, _, val in t.report.history if not math.isnan(val)]
    assert validated == [0, 4, 8, 12]
    assert t.report.best_iteration in validated and t.report.tuned_error <= t.report.untuned_error
    for bad in ({"minibatch": 0}, {"validate_every": 0}, {"minibatch": 2.5}):
        with pytest.raises(ArgumentError, match=next(iter(bad))):
            tune(field, "dpmpp_2m", 5, shape=(16, D), seed=0, **bad)


def test_fb_sample_takes_a_tuned_solver_and_refuses_what_conflicts(field):
    t = tune(field, "plms", 5, shape=(16, D), grid="logsnr", seed=0, max_iters=3, lr=0.03)
    x0 = fresh_noises(field, 8, seed=7, t0=float(t.grid[0]))
    expected = fb.sample(field, "plms", 5, x0=x0, grid=t.grid, **t.options).x
    assert torch.equal(fb.sample(field, t, x0=x0).x, expected)
    assert torch.equal(fb.sample(field, t, 5, x0=x0, t_span=(float(t.grid[0]), float(t.grid[-1]))).x, expected)
    assert torch.equal(t.sample(field, x0=x0).x, expected)  # the method is the same path
    for kwargs, match in [({"steps": 20}, "steps=20 conflicts"), ({"steps": 4}, "steps=4 conflicts"),
                          ({"grid": "logsnr"}, "grid is fixed"), ({"grid": t.grid}, "grid is fixed"),
                          ({"grid_options": {"rho": 7.0}}, "grid_options"), ({"order": 3}, r"options \['order'\] conflict"),
                          ({"t_span": (0.1, 0.9)}, "t_span")]:
        with pytest.raises(ArgumentError, match=match):
            fb.sample(field, t, x0=x0, **kwargs)


def test_one_reader_for_plain_and_tuned_presets(tmp_path):
    from pathlib import Path

    from flowbridge.samplers.presets import read_preset
    from flowbridge.samplers.tuning import load_preset

    root = Path(__file__).resolve().parents[2]
    assert load_preset(root / "samplers" / "ddim.yaml") == {"solver": "ddim", "steps": 50, "grid": "logsnr"}
    section = read_preset("model:\n  sampler: {solver: plms, grid: [0.1, 0.5, 0.9], options: {order: 2}}")
    assert section == {"solver": "plms", "steps": 2, "grid": [0.1, 0.5, 0.9], "options": {"order": 2}}
    assert TunedSolver.from_yaml("model:\n  sampler: {solver: plms, grid: [0, 0.5, 1], options: {}}").grid.tolist() == [0.0, 0.5, 1.0]
    for text, match in [("model:\n  sampler: {solver: plms, nope: 1}", "unknown keys"),
                        ("model:\n  sampler: {grid: nosuch}", "unknown grid"),
                        ("model:\n  sampler: {grid: [0.5, true]}", "grid must be"),
                        ("model:\n  sampler: {steps: 0}", "steps must be a positive"),
                        ("model:\n  sampler: {solver: plms, options: {order: 9}}", "options"),
                        ("model:\n  sampler: {guidance: .nan}", "guidance"), ("model: [", "not valid YAML"),
                        ("model:\n  sampler: {grid: [0.1, 0.5, 0.9], options: {weight_multipliers: [[1.0]]}}", "1 rows for 2 steps")]:
        with pytest.raises(ConfigError, match=match):
            read_preset(text)
    with pytest.raises(ConfigError, match="guidance"):
        TunedSolver.from_yaml("model:\n  sampler: {solver: plms, grid: [0.1, 0.9], options: {}, guidance: 2.0}")
    with pytest.raises(ConfigError, match=r"missing \['options'\]"):
        TunedSolver.from_yaml("model:\n  sampler: {solver: plms, grid: [0.1, 0.9]}")


def test_a_momentum_family_tuned_on_a_guided_field_improves_on_fresh_noises():
    """GHVB (a momentum multistep family) on a classifier-free-guided field (w = 3) of two exact
    mixtures: the conditional one is the ring's first two components."""
    ring = ring_mixture(D)
    cond = fb.GaussianMixture(torch.tensor([0.5, 0.5], dtype=torch.float64), ring.means[:2], ring.covs[:2]).field("vp")
    guided = fb.fields.CFGField(cond, ring.field("vp"), 3.0)
    tuned = tune(guided, "ghvb", 6, shape=(192, D), num_val=192, grid="logsnr", seed=0, max_iters=100, lr=0.03, patience=25)
    t0, t1 = float(tuned.grid[0]), float(tuned.grid[-1])
    x0 = fresh_noises(guided, 1024, seed=98, t0=t0)
    ref = reference(guided, x0, t0, t1)
    diff = errors(fb.sample(guided, "ghvb", 6, x0=x0, grid="logsnr").x, ref) - errors(tuned.sample(guided, x0=x0).x, ref)
    assert float(diff.mean()) > 5 * float(diff.std()) / math.sqrt(diff.numel()), float(diff.mean())


def test_a_float32_network_field_is_tuned_without_touching_its_weights():
    """A trained-model stand-in: a tiny float32 UNet read as a noise prediction on the VP path, tuned
    with float32 states against a multistep reference on a log-SNR grid. The grid and multipliers stay
    float64, the net's weights get no gradient and are unchanged, and the untuned error of the report
    is that of the solver against fb.sample's reference on the same noises."""
    from flowbridge.fields import NetworkField
    from flowbridge.nets import UNet
    from flowbridge.paths import GaussianPath, VPSchedule
    from flowbridge.random import noise_source
    from flowbridge.samplers.api import initial_state

    torch.manual_seed(0)
    net = UNet(in_channels=1, image_size=4, base_channels=8, channel_mults=[1], num_res_blocks=1).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    field = NetworkField(net, GaussianPath(VPSchedule()), "noise")
    kwargs = {"shape": (12, 1, 4, 4), "num_val": 6, "grid": "logsnr", "seed": 0, "lr": 0.03, "dtype": torch.float32,
              "reference": "dpmpp_3m", "reference_steps": 40, "reference_grid": "logsnr"}
    t = tune(field, "plms", 4, max_iters=3, **kwargs)
    assert t.grid.dtype == torch.float64 and all(isinstance(m, float) for row in t.options["weight_multipliers"] for m in row)
    assert all(p.grad is None for p in net.parameters())
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert t.report.tuned_error <= t.report.untuned_error and t.report.iterations == 3
    out = t.sample(field, shape=(3, 1, 4, 4), seed=1).x
    assert out.dtype == torch.float32 and bool(torch.isfinite(out).all())

    # The reference is fb.sample's dpmpp_3m on the log-SNR grid of the same span, on the same noises.
    init = logsnr_grid(field, "plms", 4)
    x = initial_state(field, shape=(18, 1, 4, 4), x0=None, t_start=float(init[0]), generator=noise_source(None, None, 0, 18),
                      dtype=torch.float32, device=None)
    ref = fb.sample(field, "dpmpp_3m", 40, x0=x, grid="logsnr", t_span=(float(init[0]), float(init[-1]))).x
    val = fb.sample(field, "plms", 4, x0=x[12:], grid=init).x
    expected = (val - ref[12:]).detach().reshape(6, -1).norm(dim=1).mean()
    assert math.isclose(t.report.untuned_error, float(expected), rel_tol=1e-5)
    with pytest.raises(ArgumentError, match="grid"):
        tune(field, "plms", 4, max_iters=0, **{**kwargs, "reference_grid": "no_such_grid"})
