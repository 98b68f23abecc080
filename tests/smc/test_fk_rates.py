"""The Feynman–Kac weight rate is exact: it satisfies the weighted Fokker–Planck identity.

For the simulated SDE dx = b dt + sqrt(2 eps) dW the weighted law equals q~_t iff
g = d_t log q~ + div b + b . grad log q~ - eps (lap log q~ + |grad log q~|^2). The test evaluates the
right-hand side by finite differences of the exact mixture log-densities and compares it with the
rate the library computes (which never takes a divergence).
"""

from __future__ import annotations

import pytest
import torch

import flowbridge.smc as smc
from flowbridge.analytic import GaussianMixture
from flowbridge.paths import GaussianPath, VPSchedule
from tests.conftest import ring_mixture

F64 = torch.float64


def _log_q(mixtures, exps, path, x, t):
    return sum(b * m.log_prob_t(x, t, path) for m, b in zip(mixtures, exps))


@pytest.mark.parametrize("kind", ["anneal", "product", "guided"])
@pytest.mark.parametrize("t", [0.2, 0.6, 0.9])
def test_rate_satisfies_the_weighted_fokker_planck_identity(kind, t):
    path = GaussianPath(VPSchedule())
    a = ring_mixture(2)
    b = GaussianMixture(torch.tensor([0.3, 0.7], dtype=F64), torch.tensor([[1.0, -1.0], [-2.0, 0.5]], dtype=F64), torch.tensor([0.5, 1.5], dtype=F64))
    mixtures, exps, target = {
        "anneal": ([a], [2.5], smc.anneal(a.field(path), 2.5)),
        "product": ([a, b], [1.0, 1.0], smc.product(a.field(path), b.field(path))),
        "guided": ([a, b], [3.0, -2.0], smc.guided(a.field(path), b.field(path), 3.0)),
    }[kind]
    grid = torch.tensor([t, t + 0.01], dtype=F64)
    nu = 0.7
    c = smc.step_coefficients(path, grid, nu, exponent_sum=target.exponent_sum, dtype=F64, device=torch.device("cpu"))
    x = torch.tensor([[0.3, -0.2], [1.5, 1.0], [-0.7, 2.0]], dtype=F64)
    rate = target.evaluate(x, 0, c, final=False).rate

    e = 1e-4
    lq = lambda y, s: _log_q(mixtures, exps, path, y, s)  # noqa: E731
    dt = (lq(x, t + e) - lq(x, t - e)) / (2 * e)
    grad = torch.zeros_like(x)
    lap = torch.zeros(x.shape[0], dtype=F64)
    div_b = torch.zeros(x.shape[0], dtype=F64)
    kappa, eta, eps = float(c.kappa[0]), float(c.eta[0]), float(c.eps[0])
    tt = torch.tensor(t, dtype=F64)

    def drift(y):
        s_hat = target.evaluate(y, 0, c, final=False).score
        return kappa * y + (eta + eps) * s_hat

    for k in range(2):
        dx = torch.zeros_like(x)
        dx[:, k] = e
        grad[:, k] = (lq(x + dx, tt) - lq(x - dx, tt)) / (2 * e)
        lap += (lq(x + dx, tt) - 2 * lq(x, tt) + lq(x - dx, tt)) / e**2
        div_b += (drift(x + dx)[:, k] - drift(x - dx)[:, k]) / (2 * e)
    b = drift(x)
    expected = dt + div_b + (b * grad).sum(-1) - eps * (lap + (grad * grad).sum(-1))
    torch.testing.assert_close(rate, expected, rtol=2e-4, atol=2e-4)
