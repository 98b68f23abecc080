"""Acceptance 1: Bayesian updates reproduce the flow distribution; the discrete update is the softmax
of the summed messages; the n-step loss tends to the continuous-time loss."""

from __future__ import annotations

import math

import torch

from flowbridge.bfn import ContinuousBFN, DiscreteBFN, DiscretizedBFN, IndependentCategoricalPosterior, MixturePosteriorMean

N = 40_000


def _split(total: float, n: int, g: torch.Generator) -> list[float]:
    """``n`` random positive accuracies summing to ``total`` (any split must give the same flow)."""
    w = torch.rand(n, generator=g, dtype=torch.float64) + 0.1
    return [float(v) for v in total * w / w.sum()]


def test_continuous_updates_reproduce_the_flow_distribution() -> None:
    g = torch.Generator().manual_seed(0)
    bfn = ContinuousBFN(sigma1=0.05)
    t = 0.6
    beta = float(bfn.schedule.beta(torch.tensor(t, dtype=torch.float64)))
    x = torch.tensor([1.3, -0.7, 0.0], dtype=torch.float64).expand(N, 3)
    mu, rho = torch.zeros_like(x), 1.0
    for alpha in _split(beta, 7, g):
        mu, rho = bfn.bayesian_update(mu, rho, bfn.sender_sample(x, alpha, generator=g), alpha)
    gamma = float(bfn.gamma(torch.tensor(t, dtype=torch.float64)))
    assert abs(rho - 1 / (1 - gamma)) < 1e-9 * rho  # precision rho(t) = sigma1^(-2t)
    var = gamma * (1 - gamma)
    mean_err = (mu.mean(0) - gamma * x[0]).abs().max()
    assert mean_err < 4 * math.sqrt(var / N)
    var_err = (mu.var(0) / var - 1).abs().max()
    assert var_err < 4 * math.sqrt(2 / N)
    # and the flow sampler draws the same law
    flow = bfn.flow_sample(x, torch.full((N,), t, dtype=torch.float64), generator=g)
    assert (flow.mean(0) - gamma * x[0]).abs().max() < 4 * math.sqrt(var / N)
    assert (flow.var(0) / var - 1).abs().max() < 4 * math.sqrt(2 / N)


def test_discrete_update_is_softmax_of_summed_messages_and_reproduces_the_flow() -> None:
    g = torch.Generator().manual_seed(1)
    k = 5
    bfn = DiscreteBFN(num_classes=k, beta1=2.0)
    t = 0.8
    beta = float(bfn.beta(torch.tensor(t, dtype=torch.float64)))
    x = torch.tensor([[0, 3]]).expand(N, 2)
    theta = torch.full((N, 2, k), 1.0 / k, dtype=torch.float64)
    total = torch.zeros_like(theta)
    for alpha in _split(beta, 6, g):
        msg = bfn.sender_sample(x, alpha, generator=g, dtype=torch.float64)
        theta = bfn.bayesian_update(theta, msg)
        total = total + msg
    torch.testing.assert_close(theta, torch.softmax(total, dim=-1), rtol=0, atol=1e-12)
    # summed messages ~ N(beta (K e_x - 1), beta K I): moments within Monte-Carlo error
    target_mean = beta * (k * bfn.one_hot(x[:1], torch.float64)[0] - 1)
    sd = math.sqrt(beta * k)
    assert ((total.mean(0) - target_mean).abs() / (sd / math.sqrt(N))).max() < 4.5
    assert (total.var(0) / (beta * k) - 1).abs().max() < 4.5 * math.sqrt(2 / N)
    # the flow distribution's theta agrees with the updated theta (mean of each probability)
    flow = torch.softmax(bfn.flow_sample(x, torch.full((N,), t), generator=g, dtype=torch.float64), dim=-1)
    se = torch.sqrt((theta.var(0) + flow.var(0)) / N)
    assert ((theta.mean(0) - flow.mean(0)).abs() / se).max() < 4.5


def _stratified(n: int) -> torch.Tensor:
    return (torch.arange(n, dtype=torch.float64) + 0.5) / n


def test_continuous_n_step_loss_tends_to_continuous_time_loss(mix1) -> None:  # noqa: ANN001
    bfn = ContinuousBFN(sigma1=0.05, parametrisation="data")
    net = MixturePosteriorMean(mix1, bfn.sigma1)
    m = 100_000
    x = mix1.sample(m, generator=torch.Generator().manual_seed(2))
    t = _stratified(m)
    # common random numbers: the same flow noise for every n
    lim = float(bfn.continuous_time_loss(net, x, t, generator=torch.Generator().manual_seed(3)).loss)
    gaps = []
    for n in (5, 50, 500):
        ln = float(bfn.n_step_loss(net, x, t, n, generator=torch.Generator().manual_seed(3)).loss)
        gaps.append(abs(ln - lim))
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 0.01 * lim, (gaps, lim)


class _ConstantLogits(torch.nn.Module):
    """An output that ignores theta. (An exact posterior of *any* prior makes every L^n the same
    -log q(x) - L^r, so it cannot show the n-dependence; a constant output shows it strongly.)"""

    def __init__(self, probs: torch.Tensor) -> None:
        super().__init__()
        self.logits = torch.log(probs).reshape(1, -1)

    def forward(self, inputs: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(inputs.shape[0], -1)


def test_discrete_n_step_loss_tends_to_continuous_time_loss() -> None:
    g = torch.Generator().manual_seed(4)
    probs = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]], dtype=torch.float64)
    x = IndependentCategoricalPosterior(probs).sample(200_000, generator=g)
    net = _ConstantLogits(probs)
    bfn = DiscreteBFN(num_classes=3, beta1=4.0)
    t = _stratified(x.shape[0])
    lim = float(bfn.continuous_time_loss(net, x, t, generator=torch.Generator().manual_seed(5)).loss)
    gaps, ses = [], []
    for n in (1, 10, 300):
        per = bfn.n_step_loss(net, x, t, n, generator=torch.Generator().manual_seed(6)).per_sample
        gaps.append(abs(float(per.mean()) - lim))
        ses.append(float(per.std()) / math.sqrt(x.shape[0]))
    # measured: L^1 = 1.78, L^10 = 5.19, L^300 = 6.44 +- 0.14, L^inf = 6.60
    assert gaps[0] > gaps[1] > gaps[2] - 4 * ses[2]
    assert gaps[2] < 4 * ses[2] + 0.03 * lim, (gaps, ses, lim)


def test_exact_posterior_bound_is_tight_for_discrete_data() -> None:
    """With the exact posterior as output, L^inf + L^r is a bound on the entropy and (the forward
    process being the model's own posterior) nearly equal to it: measured 1.8488 vs 1.8482 nats."""
    g = torch.Generator().manual_seed(10)
    probs = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]], dtype=torch.float64)
    net = IndependentCategoricalPosterior(probs)
    bfn = DiscreteBFN(num_classes=3, beta1=4.0)
    x = net.sample(200_000, generator=g)
    t = _stratified(x.shape[0])
    diff = bfn.continuous_time_loss(net, x, t, generator=g).per_sample
    rec = bfn.reconstruction_loss(net, x, generator=g, dtype=torch.float64)
    total = diff + rec
    entropy = float(-(probs * probs.log()).sum())
    se = float(total.std()) / math.sqrt(x.shape[0])
    assert float(total.mean()) > entropy - 4 * se
    assert float(total.mean()) < entropy + 0.01 + 4 * se


class _BiasedDiscretizedOutput(torch.nn.Module):
    """A fixed, deliberately wrong output (mean offset, narrow): L^n depends strongly on n."""

    def forward(self, inputs: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.full_like(inputs, 0.7), torch.full_like(inputs, -2.0)], dim=1)


def test_discretized_n_step_loss_tends_to_continuous_time_loss() -> None:
    bfn = DiscretizedBFN(num_bins=8, sigma1=0.1)
    net = _BiasedDiscretizedOutput()
    m = 300_000
    g = torch.Generator().manual_seed(8)
    x = bfn.bin_centres(torch.zeros(1, dtype=torch.float64))[torch.randint(0, 8, (m, 2), generator=g)]
    t = _stratified(m)
    lim = float(bfn.continuous_time_loss(net, x, t, generator=torch.Generator().manual_seed(9)).loss)
    gaps, ses = [], []
    for n in (1, 10, 100):
        per = bfn.n_step_loss(net, x, t, n, generator=torch.Generator().manual_seed(9)).per_sample
        gaps.append(abs(float(per.mean()) - lim))
        ses.append(float(per.std()) / math.sqrt(m))
    # measured: L^1 = 21.1, L^10 = 6.07, L^100 = 5.33 +- 0.06, L^inf = 5.20
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 4 * ses[2] + 0.03 * lim, (gaps, ses, lim)
