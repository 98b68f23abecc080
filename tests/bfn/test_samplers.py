"""Samplers with exact, Bayes-optimal outputs plugged in as the "network" (no training needed):
the original sampler is the first-order exponential SDE integrator on the flow's Gaussian path, and
both it and the fast solvers reproduce the data law (acceptance 2 and 4, fast versions)."""

from __future__ import annotations

import math

import pytest
import torch

from flowbridge.bfn import ContinuousBFN, DiscreteBFN, IndependentCategoricalPosterior, MixturePosteriorMean, nll_bound
from flowbridge.metrics import sliced_wasserstein
from flowbridge.metrics.quality import compare_to_truth
from flowbridge.samplers import get_solver
from tests.bfn.conftest import mixture_1d, mixture_2d


def test_original_continuous_sampler_is_the_ancestral_exponential_integrator(mix2) -> None:  # noqa: ANN001
    """The Bayesian update y ~ N(x_hat, 1/alpha_i), mu' = (rho mu + alpha y)/rho' equals flowbridge's
    ddpm_ancestral step on the path mu_t = gamma x + sqrt(gamma(1-gamma)) eps, draw for draw."""
    bfn = ContinuousBFN(sigma1=0.02, parametrisation="data")
    net = MixturePosteriorMean(mix2, bfn.sigma1)
    field = bfn.field(net)
    grid = torch.linspace(0.1, 1.0, 10, dtype=torch.float64)
    mu0 = bfn.flow_sample(mix2.sample(256, generator=torch.Generator().manual_seed(0)), torch.full((256,), 0.1, dtype=torch.float64), generator=torch.Generator().manual_seed(1))
    solver = get_solver("ddpm_ancestral")
    ref = solver.solve(field, mu0, grid, generator=torch.Generator().manual_seed(2)).x
    g = torch.Generator().manual_seed(2)
    rho = [float(1 + bfn.schedule.beta(t)) for t in grid]
    mu, r = mu0, rho[0]
    for i in range(len(grid) - 1):
        alpha = rho[i + 1] - rho[i]
        y = bfn.data_prediction(net, mu, grid[i]) + torch.randn(mu.shape, generator=g, dtype=mu.dtype) / math.sqrt(alpha)
        mu, r = bfn.bayesian_update(mu, r, y, alpha)
    torch.testing.assert_close(mu, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("mixture", [mixture_1d(), mixture_2d()], ids=["1d", "2d"])
def test_continuous_samplers_with_exact_output_reach_the_noise_floor(mixture) -> None:  # noqa: ANN001
    bfn = ContinuousBFN(sigma1=0.02, parametrisation="data")
    net = MixturePosteriorMean(mixture, bfn.sigma1)
    n = 4000
    g = torch.Generator().manual_seed(3)
    original = bfn.sample_original(net, 200, shape=(n, mixture.dim), generator=g, dtype=torch.float64)
    fast = bfn.sample(net, "dpmpp_2m", 15, shape=(n, mixture.dim), generator=g, dtype=torch.float64)
    assert original.nfe == 201 and fast.nfe == 16
    for out in (original, fast):
        report = compare_to_truth(out.x, mixture.sample, sliced_wasserstein, sets=4, generator=torch.Generator().manual_seed(4))
        assert report.ratio < 2.0, str(report)


def test_continuous_bound_with_exact_output_is_a_tight_bound(mix1) -> None:  # noqa: ANN001
    """-log p(x) <= L^inf + L^r; with the exact output the gap is only the reconstruction end
    (measured 0.02-0.06 nats on these mixtures)."""
    bfn = ContinuousBFN(sigma1=0.02, parametrisation="data")
    net = MixturePosteriorMean(mix1, bfn.sigma1)
    g = torch.Generator().manual_seed(5)
    x = mix1.sample(20_000, generator=g)
    bound = nll_bound(bfn, net, x, repeats=4, batch_size=20_000, generator=g)
    true_nll = -mix1.log_prob(x)
    gap = bound.nats - true_nll
    se = float(gap.std()) / math.sqrt(x.shape[0])
    assert float(gap.mean()) > -4 * se
    assert float(gap.mean()) < 0.1 + 4 * se
    assert bound.dims == 1 and abs(bound.bits_per_dim - bound.mean_nats / math.log(2)) < 1e-12


def test_discrete_samplers_with_exact_output_reproduce_the_marginals() -> None:
    probs = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.05, 0.9, 0.05]], dtype=torch.float64)
    net = IndependentCategoricalPosterior(probs)
    bfn = DiscreteBFN(num_classes=3, beta1=3.0)
    n = 20_000
    g = torch.Generator().manual_seed(6)
    outs = {
        "original": bfn.sample_original(net, 100, shape=(n, 3), generator=g, dtype=torch.float64),
        "fast": bfn.sample(net, "dpmpp_2m", 10, shape=(n, 3), generator=g, dtype=torch.float64),
    }
    for name, out in outs.items():
        assert out.x.dtype == torch.long and out.x.shape == (n, 3)
        freq = torch.nn.functional.one_hot(out.x, 3).double().mean(0)
        # 4.5 binomial standard errors per cell
        tol = 4.5 * torch.sqrt(probs * (1 - probs) / n)
        assert bool(((freq - probs).abs() < tol).all()), (name, freq, probs)


def test_schedules_are_the_flow_and_have_consistent_derivatives() -> None:
    bfn = ContinuousBFN(sigma1=0.05)
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    v = bfn.schedule(t)
    gamma = 1 - 0.05 ** (2 * t)
    torch.testing.assert_close(v.alpha, gamma)
    torch.testing.assert_close(v.sigma, torch.sqrt(gamma * (1 - gamma)))
    h = 1e-6
    for sched in (bfn.schedule, DiscreteBFN(num_classes=4, beta1=2.0).schedule):
        plus, minus = sched(t + h), sched(t - h)
        val = sched(t)
        torch.testing.assert_close(val.d_alpha, (plus.alpha - minus.alpha) / (2 * h), rtol=1e-6, atol=1e-8)
        torch.testing.assert_close(val.d_sigma, (plus.sigma - minus.sigma) / (2 * h), rtol=1e-6, atol=1e-8)
        torch.testing.assert_close(sched.inverse_log_snr(sched.log_snr(t)), t)
        torch.testing.assert_close(sched.log_snr(t), torch.log(val.alpha / val.sigma))
    # the discrete accuracies sum to beta(1) and the continuous ones to beta(1) = sigma1^-2 - 1
    assert abs(float(DiscreteBFN(num_classes=4, beta1=2.0).accuracies(7).sum()) - 2.0) < 1e-12
    assert abs(float(bfn.accuracies(7).sum()) - (0.05**-2 - 1)) < 1e-9


def test_logit_skip_turns_a_prior_into_the_exact_posterior() -> None:
    """With ``logit_skip`` a network that outputs the constant log-marginals is Bayes-optimal."""
    probs = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]], dtype=torch.float64)

    class Prior(torch.nn.Module):
        def forward(self, inputs: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return torch.log(probs).reshape(1, -1).expand(inputs.shape[0], -1)

    exact = IndependentCategoricalPosterior(probs)
    plain, skip = DiscreteBFN(num_classes=3), DiscreteBFN(num_classes=3, logit_skip=True)
    y = plain.flow_sample(torch.tensor([[0, 2]] * 8), torch.full((8,), 0.7), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(skip.output_probs(Prior(), y, 0.7), plain.output_probs(exact, y, 0.7))
