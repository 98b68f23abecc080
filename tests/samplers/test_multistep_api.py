"""Multistep solvers: any schedule, grid and parametrisation; explicit state; options; bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import flowbridge as fb
from flowbridge.analytic import gaussian_flow_map
from flowbridge.fields import Field, InterpolantField, NetworkField
from flowbridge.paths import GaussianPath, StochasticInterpolant, VESchedule, VPSchedule
from flowbridge.samplers import SOLVERS, get_solver, make_grid
from tests.conftest import ring_mixture

MULTISTEP = ["ddim", "dpmpp_2m", "dpmpp_3m", "unipc", "plms", "deis", "plms_hb", "plms_nesterov", "dpmpp_2m_hb", "ghvb"]


class Reparametrised(Field):
    """An exact mixture field answering in another parametrisation, as a network trained on it would."""

    def __init__(self, inner: Field, parametrisation: str) -> None:
        super().__init__(inner.path, parametrisation)
        self.inner = inner

    def predict(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return getattr(self.inner, self.parametrisation)(x, t)


@pytest.mark.parametrize("solver", MULTISTEP)
@pytest.mark.parametrize("parametrisation", ["velocity", "noise", "score"])
def test_any_parametrisation_gives_the_same_samples(solver, parametrisation):
    path = GaussianPath(VPSchedule())
    field = ring_mixture(2).field(path)
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a = fb.sample(field, solver, 10, x0=x, grid="logsnr").x
    b = fb.sample(Reparametrised(field, parametrisation), solver, 10, x0=x, grid="logsnr").x
    torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("solver", MULTISTEP)
@pytest.mark.parametrize(
    "path",
    [GaussianPath(VPSchedule()), GaussianPath(VPSchedule(kind="cosine")), GaussianPath(VESchedule()),
     GaussianPath("linear"), GaussianPath("trig")],
    ids=["vp", "vp_cosine", "ve", "linear", "trig"],
)
@pytest.mark.parametrize("grid", ["uniform", "quadratic", "logsnr", "karras"])
def test_every_schedule_and_grid_converges_to_the_exact_map(solver, path, grid):
    """On a single Gaussian (std 0.55) the error to the exact flow map falls from 25 to 100 steps and
    is below 0.1 at 100 steps, for every schedule and grid. On the linear and trig paths the uniform
    and quadratic grids start at t = 1e-3 (alpha = 0 at t = 0 is refused, see
    test_alpha_zero_is_refused_with_a_clear_message)."""
    gm = ring_mixture(2, k=1, var=0.3)
    t0 = 1e-3 if (path.schedule.name in ("linear", "trig") and grid in ("uniform", "quadratic")) else path.t_min
    errors = []
    for n in (25, 100):
        times = make_grid(grid, n, t0, path.t_max, path.schedule)
        sigma0 = float(path.schedule(times[:1]).sigma)
        x = sigma0 * torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        exact = gaussian_flow_map(gm.means[0], gm.covs[0], path, x, float(times[0]), float(times[-1]))
        out = get_solver(solver).solve(gm.field(path), x, times).x
        errors.append(float((out - exact).norm(dim=1).max()))
    assert errors[1] < 0.1 and (errors[1] < errors[0] or errors[1] < 5e-3), errors


@pytest.mark.parametrize("solver", ["ddim", "dpmpp_2m", "unipc", "plms", "ghvb", "deis"])
def test_linear_path_to_t_equal_1_where_sigma_is_zero(solver):
    """sigma(1) = 0 on the linear path: the exponential methods take the exact h -> inf limit of a
    first-order last step, the Adams methods step to sigma/alpha = 0. Both converge to the exact map."""
    path = GaussianPath("linear")
    gm = ring_mixture(2, k=1)
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    errors = []
    for n in (20, 80):
        times = make_grid("uniform", n, 0.01, 1.0)
        x0 = x * float(path.schedule(times[:1]).sigma)
        exact = gaussian_flow_map(gm.means[0], gm.covs[0], path, x0, float(times[0]), 1.0)
        errors.append(float((get_solver(solver).solve(gm.field(path), x0, times).x - exact).abs().max()))
    assert errors[1] < errors[0] / 3 and errors[1] < 2e-2, errors


def test_alpha_zero_is_refused_with_a_clear_message():
    field = ring_mixture(2).field("linear")
    with pytest.raises(ValueError, match="alpha = 0.*grid='logsnr'"):
        fb.sample(field, "dpmpp_2m", 10, shape=(4, 2), grid="uniform", t_span=(0.0, 1.0))
    for kwargs in ({"grid": "logsnr"}, {"grid": "uniform"}, {}):  # the default span avoids alpha = 0
        out = fb.sample(field, "dpmpp_2m", 10, shape=(4, 2), generator=torch.Generator().manual_seed(0), **kwargs)
        assert torch.isfinite(out.x).all()


def test_field_without_gaussian_path_is_refused_naming_the_solvers_that_apply():
    field = InterpolantField(nn.Linear(2, 2), None, StochasticInterpolant())
    for name in MULTISTEP:
        with pytest.raises(ValueError, match=r"needs a field on a GaussianPath.*Solvers that apply: .*heun"):
            fb.sample(field, name, 10, x0=torch.zeros(4, 2))
    bare = NetworkField(nn.Linear(2, 2), None, "velocity")
    with pytest.raises(ValueError, match="euler"):
        get_solver("unipc").check(bare, 10)


@pytest.mark.parametrize("solver,minimum", [("ddim", 1), ("dpmpp_2m", 2), ("dpmpp_3m", 3), ("plms", 2), ("ghvb", 2), ("unipc", 2)])
def test_too_few_steps_are_refused_with_the_minimum(solver, minimum):
    assert SOLVERS[solver].min_steps == minimum
    field = ring_mixture(2).field("vp")
    if minimum > 1:
        with pytest.raises(ValueError, match=f"steps >= {minimum}"):
            fb.sample(field, solver, minimum - 1, shape=(4, 2))
    assert torch.isfinite(fb.sample(field, solver, minimum, shape=(4, 2)).x).all()


@pytest.mark.parametrize(
    "solver,options,match",
    [
        ("plms", {"order": 5}, "order must be an integer in \\[1, 4\\]"),
        ("unipc", {"order": 0}, "order must be"),
        ("unipc", {"variant": "bh3"}, "variant must be one of"),
        ("dpmpp_3m", {"variant": "x"}, "variant must be one of"),
        ("ghvb", {"beta": 0.0}, "beta must lie in \\(0, 1\\]"),
        ("plms_hb", {"beta": 1.5}, "beta must lie"),
        ("dpmpp_2m", {"final_step": "last"}, "final_step must be one of"),
        ("ddim", {"warmup": "rk4"}, "warmup must be one of"),
        ("dpmpp_2m", {"beta": 0.5}, "has no option"),
    ],
)
def test_bad_options_are_refused(solver, options, match):
    with pytest.raises(ValueError, match=match):
        get_solver(solver, **options)


def test_decreasing_grid_is_refused():
    field = ring_mixture(2).field("vp")
    with pytest.raises(ValueError, match="increasing grid"):
        get_solver("plms").solve(field, torch.zeros(2, 2), torch.tensor([0.9, 0.5, 0.1], dtype=torch.float64))


@pytest.mark.parametrize("solver", MULTISTEP)
def test_history_lives_in_the_state_not_on_the_solver(solver):
    """One solver object, two batches stepped in interleaved order, equals two separate runs (the
    history leak of diffusers #8711 cannot happen)."""
    field = ring_mixture(2).field("vp")
    times = make_grid("logsnr", 8, 0.0, field.path.t_max, field.path.schedule)
    xa = torch.randn(4, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    xb = 3 * torch.randn(6, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    s = get_solver(solver)
    sa, sb = s.init(field, xa, times), s.init(field, xb, times)
    ya, yb = xa, xb
    for i in range(8):
        ya, sa = s.step(field, ya, sa, i)
        yb, sb = s.step(field, yb, sb, i)
    torch.testing.assert_close(ya, s.solve(field, xa, times).x, rtol=0, atol=0)
    torch.testing.assert_close(yb, s.solve(field, xb, times).x, rtol=0, atol=0)


@pytest.mark.parametrize("solver", MULTISTEP)
def test_step_loop_has_no_host_synchronisation(solver, monkeypatch):
    """Inside the loop nothing may read a tensor value back to the host (no .item(), bool(tensor),
    .tolist(), .cpu()): every coefficient was precomputed in init."""
    field = ring_mixture(2).field("vp")
    times = make_grid("karras", 10, 0.0, field.path.t_max, field.path.schedule)
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    s = get_solver(solver)
    state = s.init(field, x, times)

    def refuse(*args, **kwargs):
        raise AssertionError("host synchronisation inside the step loop")

    for name in ("item", "tolist", "cpu", "__bool__", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    for i in range(10):
        x, state = s.step(field, x, state, i)
    monkeypatch.undo()
    assert torch.isfinite(x).all()


@pytest.mark.parametrize("solver", ["ddim", "dpmpp_2m", "unipc", "plms", "ghvb", "dpmpp_2m_hb"])
def test_final_step_options(solver):
    field = ring_mixture(2).field("vp")
    times = make_grid("logsnr", 6, 0.0, field.path.t_max, field.path.schedule)
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64) * 80 / (1 + 80**2) ** 0.5
    plain = get_solver(solver).solve(field, x, times).x
    # denoise: the last step returns the data prediction at grid[-2] (diffusers' final sigma = 0).
    traj = get_solver(solver, final_step="denoise").solve(field, x, times, return_trajectory=True).trajectory
    if solver != "ghvb":  # GHVB keeps its momentum average on the last step
        torch.testing.assert_close(traj[-1], field.data(traj[-2], times[-2].to(x)), rtol=1e-12, atol=1e-12)
    assert float((traj[-1] - plain).abs().max()) > 1e-4  # the option changes the result
    # first_order: the last step is a DDIM step from grid[-2] (UniPC's x there is corrected first,
    # which the trajectory does not show).
    traj = get_solver(solver, final_step="first_order").solve(field, x, times, return_trajectory=True).trajectory
    ddim_last = get_solver("ddim").solve(field, traj[-2], times[-2:]).x
    if solver not in ("ghvb", "unipc", "ddim"):
        torch.testing.assert_close(traj[-1], ddim_last, rtol=1e-12, atol=1e-12)
        if solver != "dpmpp_2m_hb":  # its default is already first_order
            assert float((traj[-1] - plain).abs().max()) > 1e-6


def test_float32_runs_and_stays_close_to_float64():
    field64 = ring_mixture(2).field("vp")
    field32 = fb.GaussianMixture(*(v.float() for v in (field64.mixture.weights, field64.mixture.means, field64.mixture.covs))).field("vp")
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    for name in MULTISTEP:
        a = fb.sample(field64, name, 15, x0=x, grid="logsnr").x
        b = fb.sample(field32, name, 15, x0=x.float(), grid="logsnr").x
        assert b.dtype == torch.float32
        torch.testing.assert_close(b.double(), a, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("solver", ["dpmpp_2m", "unipc", "ghvb"])
def test_field_under_torch_compile_matches_eager(solver):
    field = ring_mixture(2).field("vp")
    compiled = torch.compile(field)

    class Compiled(Field):
        def __init__(self) -> None:
            super().__init__(field.path, "data")

        def predict(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return compiled(x, t)

    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(8))
    eager = fb.sample(field, solver, 12, x0=x.double(), grid="logsnr").x
    out = fb.sample(Compiled(), solver, 12, x0=x.double(), grid="logsnr").x
    torch.testing.assert_close(out, eager, rtol=1e-6, atol=1e-6)
