import pytest
import torch

import flowbridge as fb
from flowbridge.fields import InterpolantField
from flowbridge.paths import StochasticInterpolant
from flowbridge.samplers import SamplingError
from tests.conftest import ring_mixture


@pytest.fixture
def field():
    return ring_mixture(2).field("linear")


def test_unknown_names_list_the_known_ones(field):
    with pytest.raises(ValueError, match=r"unknown solver 'rk45'; known solvers: .*dopri5.*euler.*heun"):
        fb.sample(field, "rk45", 10, shape=(2, 2))
    with pytest.raises(ValueError, match=r"unknown grid 'cosine'; known grids: karras, logsnr, quadratic, uniform"):
        fb.sample(field, "heun", 10, shape=(2, 2), grid="cosine")
    with pytest.raises(ValueError, match=r"has no option\(s\) \['beta'\]"):
        fb.sample(field, "heun", 10, shape=(2, 2), beta=0.5)


def test_shape_and_time_errors(field):
    with pytest.raises(ValueError, match=r"x0 has shape \(3, 2\) but shape=\(4, 2\)"):
        fb.sample(field, "heun", 10, shape=(4, 2), x0=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="give either shape"):
        fb.sample(field, "heun", 10)
    with pytest.raises(ValueError, match=r"t_end must lie in \[0, 1\]"):
        fb.sample(field, "heun", 10, shape=(2, 2), t_span=(0.0, 1.5))
    with pytest.raises(ValueError, match=r"steps must be a positive integer"):
        fb.sample(field, "heun", 0, shape=(2, 2))
    with pytest.raises(ValueError, match="t must be a scalar or have shape"):
        field.velocity(torch.zeros(3, 2), torch.zeros(2))


def test_non_finite_result_raises_sampling_error(field):
    x0 = torch.zeros(5, 2, dtype=torch.float64)
    x0[1, 0] = float("nan")
    x0[3, 1] = float("inf")
    with pytest.raises(SamplingError, match=r"solver 'euler' produced non-finite values in 2 of 5 samples"):
        fb.sample(field, "euler", 4, x0=x0)


def test_sde_solver_needs_a_gaussian_path_and_finite_eps():
    net = torch.nn.Identity()
    interp_field = InterpolantField(lambda x, t: x, None, StochasticInterpolant())
    with pytest.raises(ValueError, match=r"euler_maruyama.*Solvers that apply: .*heun"):
        fb.sample(interp_field, "euler_maruyama", 10, x0=torch.zeros(2, 2))
    linear = ring_mixture(2).field("linear")
    with pytest.raises(ValueError, match=r"eps\(t\) is not finite"):
        fb.sample(linear, "euler_maruyama", 10, shape=(2, 2), t_span=(0.0, 1.0))
    # Without a t_span the solver picks one it can run: the diffusion level is infinite at t = 0.
    assert fb.get_solver("euler_maruyama").default_span(linear) == (1e-3, 1.0)
    assert torch.isfinite(fb.sample(linear, "euler_maruyama", 10, shape=(2, 2)).x).all()
    with pytest.raises(ValueError, match="noise_scale must be >= 0"):
        fb.get_solver("euler_maruyama", noise_scale=-1.0)
    del net


def test_same_generator_seed_same_samples(field):
    a = fb.sample(field, "euler_maruyama", 20, shape=(64, 2), generator=torch.Generator().manual_seed(7), t_span=(1e-3, 1.0))
    b = fb.sample(field, "euler_maruyama", 20, shape=(64, 2), generator=torch.Generator().manual_seed(7), t_span=(1e-3, 1.0))
    c = fb.sample(field, "euler_maruyama", 20, shape=(64, 2), generator=torch.Generator().manual_seed(8), t_span=(1e-3, 1.0))
    assert torch.equal(a.x, b.x) and not torch.allclose(a.x, c.x)


@pytest.mark.parametrize("solver", ["heun", "euler_maruyama"])
def test_per_sample_seeds_do_not_depend_on_batch(solver):
    field = ring_mixture(2).field("vp")
    seeds = list(range(1000, 2000))
    runs = {n: fb.sample(field, solver, 10, shape=(n, 2), seeds=seeds[:n], dtype=torch.float64).x for n in (1, 7, 1000)}
    torch.testing.assert_close(runs[7][:1], runs[1], rtol=0, atol=1e-12)
    torch.testing.assert_close(runs[1000][:7], runs[7], rtol=0, atol=1e-12)
    assert not torch.allclose(runs[7][0], runs[7][1])
    with pytest.raises(ValueError, match="seeds has 3 entries but the batch has 4"):
        fb.sample(field, solver, 10, shape=(4, 2), seeds=[1, 2, 3])


@pytest.mark.parametrize("solver", ["heun", "euler_maruyama"])
def test_chunked_sampling_with_seed_is_chunk_invariant(solver):
    field = ring_mixture(2).field("vp")
    whole = fb.sample(field, solver, 8, shape=(50, 2), seed=3, dtype=torch.float64).x
    chunked = fb.sample(field, solver, 8, shape=(50, 2), seed=3, batch_size=7, dtype=torch.float64).x
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-12)
    other = fb.sample(field, solver, 8, shape=(50, 2), seed=4, dtype=torch.float64).x
    assert not torch.allclose(other, whole)
    with pytest.raises(ValueError, match="at most one of generator, seeds and seed"):
        fb.sample(field, solver, 8, shape=(5, 2), seed=3, generator=torch.Generator())
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        fb.sample(field, solver, 8, shape=(5, 2), batch_size=0)


def test_autocast_and_compiled_fields_agree_with_eager():
    from flowbridge.nets import MLP

    torch.manual_seed(0)
    net_field = fb.NetworkField(MLP(2, hidden=32, depth=2), fb.GaussianPath("linear"), "velocity")
    x0 = torch.randn(64, 2)
    eager = fb.sample(net_field, "heun", 5, x0=x0).x
    low = fb.sample(net_field, "heun", 5, x0=x0, autocast=torch.bfloat16).x
    assert low.dtype == torch.float32
    assert 0 < float((low - eager).abs().max()) < 0.1  # bf16 network, fp32 solver: close, not equal
    with pytest.raises(ValueError, match="autocast dtype must be"):
        fb.sample(net_field, "heun", 5, x0=x0, autocast=torch.float64)


@pytest.mark.slow
@pytest.mark.parametrize("solver", ["heun", "euler_maruyama"])
def test_compiled_field_matches_eager(solver):
    from flowbridge.nets import MLP

    torch.manual_seed(0)
    net_field = fb.NetworkField(MLP(2, hidden=32, depth=2), fb.GaussianPath("vp"), "noise")
    eager = fb.sample(net_field, solver, 6, shape=(64, 2), seed=1).x
    compiled = fb.sample(net_field, solver, 6, shape=(64, 2), seed=1, compile=True).x
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)
