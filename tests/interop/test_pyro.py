"""FlowPrior (flowbridge field as a Pyro distribution) against exact Gaussian-mixture densities."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC, NUTS
from pyro.infer.autoguide.initialization import init_to_value

from flowbridge import log_likelihood
from flowbridge.analytic import GaussianMixture
from flowbridge.interop import FlowPrior
from flowbridge.paths import GaussianPath
from tests.conftest import ring_mixture


@pytest.fixture
def mixture() -> GaussianMixture:
    return ring_mixture(2)


def exact_score(gm: GaussianMixture, x: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    return torch.autograd.grad(gm.log_prob(x).sum(), x)[0]


def test_log_prob_matches_the_exact_mixture_density(mixture):
    prior = FlowPrior(mixture.field("linear"), (2,), steps=32)
    x = mixture.sample(48, generator=torch.Generator().manual_seed(0))
    error = (prior.log_prob(x) - mixture.log_prob(x)).abs().max()
    assert float(error) < 5e-3, float(error)  # rk4 with 32 steps measured 8e-4
    adaptive = FlowPrior(mixture.field("linear"), (2,), solver="dopri5", rtol=1e-7, atol=1e-7)
    error = (adaptive.log_prob(x) - mixture.log_prob(x)).abs().max()
    assert float(error) < 1e-3, float(error)


def test_log_prob_is_batched_over_any_sample_shape(mixture):
    prior = FlowPrior(mixture.field("linear"), (2,), steps=16)
    x = mixture.sample(12, generator=torch.Generator().manual_seed(1))
    flat = prior.log_prob(x)
    grid = prior.log_prob(x.reshape(3, 4, 2))
    assert grid.shape == (3, 4)
    torch.testing.assert_close(grid.reshape(-1), flat)
    single = prior.log_prob(x[5])
    assert single.shape == ()
    torch.testing.assert_close(single, flat[5])
    assert prior.log_prob(x[:0]).shape == (0,)


def test_gradient_of_log_prob_is_the_exact_score(mixture):
    prior = FlowPrior(mixture.field("linear"), (2,), steps=32)
    x = mixture.sample(32, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
    grad = torch.autograd.grad(prior.log_prob(x).sum(), x)[0]
    score = exact_score(mixture, x)
    # measured 6e-3 at 32 steps (scores up to ~10); the error shrinks at 4th order
    assert float((grad - score).abs().max()) < 0.03, float((grad - score).abs().max())
    coarse = FlowPrior(mixture.field("linear"), (2,), steps=16)
    coarse_grad = torch.autograd.grad(coarse.log_prob(x).sum(), x)[0]
    ratio = float((coarse_grad - score).abs().max() / (grad - score).abs().max())
    assert ratio > 6, ratio  # 4th order: ~16 expected (measured 12)


def test_no_grad_gives_the_same_numbers_without_a_graph(mixture):
    prior = FlowPrior(mixture.field("linear"), (2,), steps=8)
    x = mixture.sample(6, generator=torch.Generator().manual_seed(3))
    with_graph = prior.log_prob(x.clone().requires_grad_(True))
    with torch.no_grad():
        without = prior.log_prob(x)
    constant = prior.log_prob(x)  # a constant input to a parameter-free field needs no graph either
    assert with_graph.requires_grad and not without.requires_grad and not constant.requires_grad
    torch.testing.assert_close(with_graph.detach(), without, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(constant, without, rtol=1e-12, atol=1e-12)


def test_likelihood_differentiable_option_keeps_the_old_detached_default(mixture):
    x = mixture.sample(4, generator=torch.Generator().manual_seed(4)).requires_grad_(True)
    field = mixture.field("linear")
    detached = log_likelihood(field, x, method="rk4", options={"step_size": 1 / 8})
    attached = log_likelihood(field, x, method="rk4", options={"step_size": 1 / 8}, differentiable=True)
    assert not detached.log_prob.requires_grad and attached.log_prob.requires_grad
    torch.testing.assert_close(attached.log_prob.detach(), detached.log_prob, rtol=1e-12, atol=1e-12)
    with pytest.raises(TypeError, match="differentiable must be a bool"):
        log_likelihood(field, x, differentiable="yes")


def test_sample_moments_match_the_mixture(mixture):
    prior = FlowPrior(mixture.field("linear"), (2,), steps=16, generator=torch.Generator().manual_seed(5))
    n = 4000
    x = prior.sample((n,))
    assert x.shape == (n, 2) and not x.requires_grad
    mean, cov = mixture.mean(), mixture.covariance()
    # mean within 4 standard errors per coordinate; covariance entries within 10%
    std_error = torch.sqrt(torch.diagonal(cov) / n)
    assert bool(((x.mean(0) - mean).abs() < 4 * std_error).all()), (x.mean(0), mean)
    assert float(((torch.cov(x.T) - cov).abs() / cov.diagonal().max()).max()) < 0.1
    assert prior.sample((2, 3)).shape == (2, 3, 2)
    assert prior.sample().shape == (2,)


def test_sample_generator_and_global_rng_are_reproducible(mixture):
    field = mixture.field("linear")
    a = FlowPrior(field, (2,), steps=4, generator=torch.Generator().manual_seed(6)).sample((5,))
    b = FlowPrior(field, (2,), steps=4, generator=torch.Generator().manual_seed(6)).sample((5,))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    pyro.set_rng_seed(7)
    c = FlowPrior(field, (2,), steps=4).sample((5,))
    pyro.set_rng_seed(7)
    d = FlowPrior(field, (2,), steps=4).sample((5,))
    torch.testing.assert_close(c, d, rtol=0, atol=0)


def test_trace_log_prob_sum_inside_a_pyro_model(mixture):
    prior = FlowPrior(mixture.field("linear"), (2,), steps=32)
    y = torch.tensor([[2.5, 0.3], [-0.2, 2.8], [0.0, -3.1]])

    def model() -> None:
        with pyro.plate("data", 3):
            x = pyro.sample("x", prior)
            pyro.sample("y", dist.Normal(x, 0.5).to_event(1), obs=y)

    pyro.set_rng_seed(8)
    trace = pyro.poutine.trace(model).get_trace()
    x = trace.nodes["x"]["value"]
    assert x.shape == (3, 2)
    expected = mixture.log_prob(x).sum() + dist.Normal(x, 0.5).log_prob(y).sum()
    assert abs(float(trace.log_prob_sum() - expected)) < 0.02


def test_short_nuts_run_on_a_gaussian_prior_matches_the_closed_form_posterior():
    # Prior N(m, S), y = x + 0.5 eps: posterior N(mu_post, P) in closed form.
    m = torch.tensor([1.0, -0.5])
    s = torch.tensor([[0.6, 0.2], [0.2, 0.4]])
    gm = GaussianMixture(torch.ones(1), m[None], s[None])
    prior = FlowPrior(gm.field(GaussianPath("linear")), (2,), steps=3)
    y = torch.tensor([1.6, 0.4])
    noise = 0.25
    precision = torch.linalg.inv(s) + torch.eye(2) / noise
    cov_post = torch.linalg.inv(precision)
    mean_post = cov_post @ (torch.linalg.solve(s, m) + y / noise)

    def model() -> None:
        x = pyro.sample("x", prior)
        pyro.sample("y", dist.Normal(x, math.sqrt(noise)).to_event(1), obs=y)

    pyro.set_rng_seed(9)
    kernel = NUTS(model, init_strategy=init_to_value(values={"x": mean_post.clone()}), max_tree_depth=2)
    mcmc = MCMC(kernel, num_samples=60, warmup_steps=30, disable_progbar=True)
    mcmc.run()
    xs = mcmc.get_samples()["x"]
    assert xs.shape == (60, 2)
    std_post = cov_post.diagonal().sqrt()
    # NUTS draws are correlated: allow 4 standard errors at an effective size of ~15
    assert bool(((xs.mean(0) - mean_post).abs() < 4 * std_post / math.sqrt(15)).all()), (xs.mean(0), mean_post)
    ratio = xs.std(0) / std_post
    assert bool(((ratio > 0.5) & (ratio < 1.6)).all()), ratio


@pytest.mark.slow
def test_longer_nuts_run_on_a_two_component_mixture_posterior():
    """NUTS through FlowPrior.log_prob against the exact (closed-form) mixture posterior.

    Overlapping components keep the posterior unimodal enough for one NUTS chain, and 4 rk4 steps
    keep the density within 0.01 nats of the exact one on [-3, 3]^2 (measured).
    """
    from flowbridge.analytic.posterior import mixture_posterior

    dtype = torch.float64
    mixture = GaussianMixture(
        torch.tensor([0.6, 0.4], dtype=dtype), torch.tensor([[-0.8, 0.0], [0.8, 0.5]], dtype=dtype),
        torch.tensor([0.4, 0.3], dtype=dtype),
    )
    prior = FlowPrior(mixture.field("linear"), (2,), steps=4, dtype=dtype)
    y = torch.tensor([0.5, 0.2], dtype=dtype)
    noise = 0.7
    posterior = mixture_posterior(mixture, torch.eye(2, dtype=dtype), noise, y)

    def model() -> None:
        x = pyro.sample("x", prior)
        pyro.sample("y", dist.Normal(x, noise).to_event(1), obs=y)

    pyro.set_rng_seed(10)
    mcmc = MCMC(NUTS(model, max_tree_depth=3), num_samples=300, warmup_steps=100, disable_progbar=True)
    mcmc.run()
    xs = mcmc.get_samples()["x"]
    mean, std = posterior.mean(), posterior.covariance().diagonal().sqrt()
    # 4 standard errors at an effective sample size of ~75 (correlated draws)
    assert bool(((xs.mean(0) - mean).abs() < 4 * std / math.sqrt(75)).all()), (xs.mean(0), mean)
    ratio = xs.std(0) / std
    assert bool(((ratio > 0.75) & (ratio < 1.3)).all()), ratio


def test_bad_input(mixture):
    field = mixture.field("linear")
    prior = FlowPrior(field, (2,), steps=4, dtype=torch.float64)
    with pytest.raises(ValueError, match="event shape"):
        prior.log_prob(torch.zeros(5, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="dtype"):
        prior.log_prob(torch.zeros(5, 2, dtype=torch.float32))
    with pytest.raises(TypeError, match="floating"):
        prior.log_prob(torch.zeros(5, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="support"):
        FlowPrior(field, (2,), steps=4, validate_args=True).log_prob(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match="finite"):
        FlowPrior(field, (2,), steps=4, validate_args=False).log_prob(torch.tensor([[0.0, float("inf")]]))
    with pytest.raises(ValueError, match="unknown solver"):
        FlowPrior(field, (2,), sample_solver="nosuch")
    with pytest.raises(TypeError, match="torch.Tensor"):
        prior.log_prob([[0.0, 0.0]])
    with pytest.raises(TypeError, match="flowbridge Field"):
        FlowPrior(lambda x, t: x, (2,))
    with pytest.raises(ValueError, match="unknown solver"):
        FlowPrior(field, (2,), solver="leapfrog")
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        FlowPrior(field, (2,), steps=0)
    with pytest.raises(ValueError, match="event_shape"):
        FlowPrior(field, (0,))
    with pytest.raises(ValueError, match="rtol and atol"):
        FlowPrior(field, (2,), rtol=-1.0)
    with pytest.raises(TypeError, match="generator"):
        FlowPrior(field, (2,), generator=3)


def test_from_checkpoint_reads_the_trained_field_and_its_event_shape(tmp_path):
    from flowbridge.cli import load_module, main
    from flowbridge.samplers.api import default_span
    from tests.training.recipes import tiny_recipe

    assert main(["fit", "--config", str(tiny_recipe(tmp_path, max_steps=5))]) == 0
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    prior = FlowPrior.from_checkpoint(ckpt, steps=4)
    module = load_module(ckpt)
    assert tuple(prior.event_shape) == tuple(module.event_shape)
    x = torch.randn(5, *prior.event_shape, generator=torch.Generator().manual_seed(11), dtype=prior.dtype)
    with torch.no_grad():
        t0, t1 = default_span(module.field())
        expected = log_likelihood(module.field(), x, method="rk4", options={"step_size": (t1 - t0) / 4}).log_prob
        torch.testing.assert_close(prior.log_prob(x), expected)
    assert prior.sample((3,)).shape == (3, *prior.event_shape)
    with pytest.raises(Exception, match="no such checkpoint"):
        FlowPrior.from_checkpoint(tmp_path / "missing.ckpt")
