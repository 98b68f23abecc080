r"""Strong (pathwise) convergence orders on Ornstein–Uhlenbeck processes with known solutions.

The target N(0, I) on the ``trig`` path has a constant marginal N(0, I), velocity 0 and score -x, so
the reverse SDE with a user level eps(t) = theta is the stationary OU process
dX = -theta X dt + sqrt(2 theta) dW, whose solution given the Brownian path is

    X_T = e^{-theta T} X_0 + sqrt(2 theta) (W_T - theta int_0^T e^{-theta (T-s)} W_s ds).

With the natural level eps(t) = (pi/2) cot(pi t/2) the SDE is the time-varying OU
dX = -eps X dt + sqrt(2 eps) dW with X_T = (sin(pi t0/2) X_0 + int sin(pi s/2) sqrt(pi cot(pi s/2)) dW_s) / sin(pi T/2),
which checks the exponential integrators. One :class:`BrownianPath` drives every step count, so
errors are strong errors; the integrals are evaluated on a 2^12-step fine grid of the same path.

Theory for additive noise: Euler–Maruyama (native and torchsde) and reversible Heun order 1, SRK 1.5.
Measured (B = 200, d = 2): EM 1.02, torchsde:euler 1.02 (identical paths), reversible Heun 1.00,
SRK ~1.9 (faster than 1.5 on this linear problem), DDPM ancestral ~1, DPM-Solver++(2M) SDE 1.32.
"""

from __future__ import annotations

import math

import pytest
import torch

import flowbridge as fb
from flowbridge.analytic import GaussianMixture
from flowbridge.samplers.sde import BrownianPath

B, D, THETA = 200, 2, 2.0
FINE_STEPS = 2**12


def _standard_normal_field():
    mixture = GaussianMixture(torch.ones(1, dtype=torch.float64), torch.zeros(1, D, dtype=torch.float64), torch.ones(1, dtype=torch.float64))
    return mixture.field("trig")


def _fine_path(path: BrownianPath, t0: float, t1: float) -> tuple[torch.Tensor, torch.Tensor]:
    s = torch.linspace(t0, t1, FINE_STEPS + 1, dtype=torch.float64)
    dw = torch.stack([path.increment(float(s[j]), float(s[j + 1])) for j in range(FINE_STEPS)])
    return s, dw


def _stationary_ou_solution(x0, path, t0, t1):
    s, dw = _fine_path(path, t0, t1)
    w = torch.cat([torch.zeros(1, *x0.shape, dtype=x0.dtype), dw.cumsum(0)])
    kernel = torch.exp(-THETA * (t1 - s))[:, None, None]
    integral = w[-1] - THETA * torch.trapezoid(kernel * w, s, dim=0)
    return math.exp(-THETA * (t1 - t0)) * x0 + math.sqrt(2 * THETA) * integral


def _natural_ou_solution(x0, path, t0, t1):
    s, dw = _fine_path(path, t0, t1)
    mid = 0.5 * (s[1:] + s[:-1])
    weight = torch.sin(math.pi * mid / 2) * torch.sqrt(math.pi / torch.tan(math.pi * mid / 2))
    integral = (weight[:, None, None] * dw).sum(0)
    return (math.sin(math.pi * t0 / 2) * x0 + integral) / math.sin(math.pi * t1 / 2)


def measured_order(solver: str, steps: list[int], natural: bool, seed: int = 0) -> tuple[float, list[float]]:
    """Least-squares slope of log(mean |X_N - X_exact|) against log(step size)."""
    field = _standard_normal_field()
    t0, t1 = (0.2, 0.9) if natural else (0.0, 0.9)
    x0 = torch.randn(B, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    path = BrownianPath((B, D), t0, t1, seed=1000 + seed)
    exact = (_natural_ou_solution if natural else _stationary_ou_solution)(x0, path, t0, t1)
    options = {} if natural else {"eps": lambda t: torch.full_like(t, THETA)}
    errors = []
    for n in steps:
        out = fb.sample(field, solver, n, x0=x0, generator=path, t_span=(t0, t1), **options)
        errors.append(float((out.x - exact).norm(dim=1).mean()))
    logs_h = torch.log(torch.tensor([1.0 / n for n in steps], dtype=torch.float64))
    logs_e = torch.log(torch.tensor(errors, dtype=torch.float64))
    slope = float(((logs_h - logs_h.mean()) * (logs_e - logs_e.mean())).sum() / ((logs_h - logs_h.mean()) ** 2).sum())
    return slope, errors


@pytest.mark.parametrize(
    "solver,theory,steps",
    [
        ("euler_maruyama", 1.0, [8, 16, 32, 64]),
        ("torchsde:euler", 1.0, [8, 16, 32, 64]),
        ("torchsde:reversible_heun", 1.0, [8, 16, 32, 64]),
    ],
)
def test_strong_order_first_order_solvers(solver, theory, steps):
    order, errors = measured_order(solver, steps, natural=False)
    assert abs(order - theory) <= 0.15, f"{solver}: measured strong order {order:.2f} (errors {errors})"


def test_strong_order_srk_at_least_three_halves():
    order, errors = measured_order("torchsde:srk", [4, 8, 16, 32], natural=False)
    assert order >= 1.4, f"torchsde:srk: measured strong order {order:.2f} (errors {errors})"


def test_native_and_torchsde_euler_share_the_brownian_path():
    field = _standard_normal_field()
    x0 = torch.randn(B, D, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    path = BrownianPath((B, D), 0.0, 0.9, seed=7)
    eps = {"eps": lambda t: torch.full_like(t, THETA)}
    native = fb.sample(field, "euler_maruyama", 16, x0=x0, generator=path, t_span=(0.0, 0.9), **eps).x
    backend = fb.sample(field, "torchsde:euler", 16, x0=x0, generator=path, t_span=(0.0, 0.9), **eps).x
    # Identical up to torchsde's accumulated step times (~1e-16, i.e. ~1e-8 in W); a different path differs by O(0.1).
    torch.testing.assert_close(native, backend, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("solver", ["euler_maruyama", "ddpm_ancestral"])
def test_strong_order_on_the_natural_level(solver):
    order, errors = measured_order(solver, [8, 16, 32, 64], natural=True)
    assert abs(order - 1.0) <= 0.2, f"{solver}: measured strong order {order:.2f} (errors {errors})"


def test_strong_order_dpmpp_2m_sde_at_least_one():
    # Theory: at least the order 1 of its first-order (DDPM) step; the second-order correction makes
    # it faster before the asymptotic regime (measured 1.32 on 8..64 steps).
    order, errors = measured_order("dpmpp_2m_sde", [8, 16, 32, 64], natural=True)
    assert order >= 0.9, f"dpmpp_2m_sde: measured strong order {order:.2f} (errors {errors})"
    ancestral, ancestral_errors = measured_order("ddpm_ancestral", [8, 16, 32, 64], natural=True)
    assert errors[-1] < ancestral_errors[-1], "the second-order correction should reduce the strong error"
