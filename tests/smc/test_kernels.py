"""SMC on the one kernel protocol: any registered solver with a Gaussian transition moves the particles.

Exact checks (rounding-level):
* the ``euler_maruyama`` kernel's transition on a target's field equals the target's own
  Euler–Maruyama move (geometric and tilted targets), mean and standard deviation;
* the ``ddpm_ancestral`` kernel on an ``anneal(beta=1)`` target equals the built-in exponential
  move with ``noise_scale = 1`` (the DDPM posterior step, derived independently in
  :mod:`flowbridge.smc.coefficients`);
* the kernel evaluates nothing: the field is evaluated only by the target (steps + 1 times);
* resampling reorders a kernel's per-particle history (``dpmpp_2m_sde``'s previous prediction).

Convergence to exact annealed laws per kernel: ``test_kernel_convergence.py``.
"""

from __future__ import annotations

import pytest
import torch

import flowbridge.smc as smc
from flowbridge.errors import ArgumentError, CapabilityError
from flowbridge.fields.base import Field
from flowbridge.paths import GaussianPath, VPSchedule
from flowbridge.samplers import get_solver
from flowbridge.samplers.sde.ddpm import DDPMAncestral
from flowbridge.samplers.sde.dpmpp import DPMSolverPP2MSDE
from flowbridge.smc.sampler import get_kernel, take_state
from tests.conftest import ring_mixture

F64 = torch.float64
PATH = GaussianPath(VPSchedule())
CPU = torch.device("cpu")


def _grid(steps: int = 12) -> torch.Tensor:
    return torch.linspace(0.05, PATH.t_max, steps + 1, dtype=F64)


def _targets():
    a, b = ring_mixture(2).field(PATH), ring_mixture(2, k=3, radius=2.0).field(PATH)
    return {
        "anneal": smc.anneal(a, 2.5),
        "product": smc.product(a, b),
        "guided": smc.guided(a, b, 3.0),
        "tilted": smc.tilted(a, lambda x: -0.5 * (x**2).sum(-1), 2.0, gradient=False),
    }


@pytest.mark.parametrize("kind", ["anneal", "product", "guided", "tilted"])
@pytest.mark.parametrize("noise", [(1.0, 0.0), (0.4, 2.0)])
def test_euler_maruyama_kernel_is_the_targets_own_move(kind, noise):
    nu, extra = noise
    target = _targets()[kind]
    grid = _grid()
    c = smc.step_coefficients(PATH, grid, nu, extra_noise=extra, exponent_sum=target.exponent_sum, dtype=F64, device=CPU)
    kernel = get_kernel("euler_maruyama", PATH, nu, extra)
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=F64) * 2
    state = kernel.init(target.field, x, grid)
    for i in range(c.steps):
        cache = target.evaluate(x, i, c, final=False)
        tr = kernel.transition(target.kernel_field(x, cache), x, state, i)
        torch.testing.assert_close(tr.mean, target.builtin_mean(x, cache, i, c), rtol=1e-10, atol=1e-10)
        assert tr.std == pytest.approx(float(c.noise_std[i]), rel=1e-10)
        state = tr.state
        x = tr.mean  # walk along the drift
    # The kernel's field is the target's field: sampled alone it is the uncorrected heuristic.
    assert isinstance(target.field, Field) and target.field.path == PATH


def test_ddpm_kernel_is_the_exponential_move_at_beta_one():
    target = smc.anneal(ring_mixture(2).field(PATH), 1.0)
    grid = _grid()
    c = smc.step_coefficients(PATH, grid, 1.0, move="exponential", dtype=F64, device=CPU)
    kernel = get_kernel("ddpm_ancestral", PATH, 1.0, 0.0)
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    state = kernel.init(target.field, x, grid)
    for i in range(c.steps):
        cache = target.evaluate(x, i, c, final=False)
        tr = kernel.transition(target.kernel_field(x, cache), x, state, i)
        torch.testing.assert_close(tr.mean, target.builtin_mean(x, cache, i, c), rtol=1e-9, atol=1e-9)
        assert tr.std == pytest.approx(float(c.noise_std[i]), rel=1e-9)
        x = tr.mean


class _Counting(Field):
    def __init__(self, inner: Field) -> None:
        super().__init__(inner.path, inner.parametrisation)
        self.inner, self.calls = inner, 0

    def predict(self, x, t):
        self.calls += 1
        return self.inner.predict(x, t)


@pytest.mark.parametrize("solver", ["euler_maruyama", "ddpm_ancestral", "dpmpp_2m_sde", DPMSolverPP2MSDE(eta=2.0)])
def test_kernels_add_no_field_evaluations(solver):
    field = _Counting(ring_mixture(2).field(PATH))
    out = smc.sample(smc.anneal(field, 2.0), shape=(32, 2), steps=10, solver=solver, generator=torch.Generator().manual_seed(0), dtype=F64)
    assert field.calls == out.nfe == 11  # trapezoid rule: one evaluation per grid time
    assert torch.isfinite(out.samples).all()


def test_resampling_reorders_the_kernels_history():
    target = smc.anneal(ring_mixture(2).field(PATH), 2.0)
    grid = _grid(4)
    x = torch.randn(5, 2, dtype=F64)
    kernel = DPMSolverPP2MSDE()
    state = kernel.init(target.field, x, grid)
    c = smc.step_coefficients(PATH, grid, 1.0, dtype=F64, device=CPU)
    state = kernel.transition(target.kernel_field(x, target.evaluate(x, 0, c, final=False)), x, state, 0).state
    ancestors = torch.tensor([4, 4, 0, 1, 2])
    moved = take_state(state, ancestors, 5)
    torch.testing.assert_close(moved.previous, state.previous[ancestors])
    assert moved.a == state.a and moved.t is state.t


def test_kernel_options_are_checked():
    target = smc.anneal(ring_mixture(2).field(PATH), 2.0)
    kw = dict(shape=(2,), steps=4, dtype=F64)
    with pytest.raises(CapabilityError, match="no Gaussian transition"):
        smc.sample(target, particles=8, solver="heun", **kw)
    with pytest.raises(CapabilityError, match="no Gaussian transition"):
        smc.sample(target, particles=8, solver=get_solver("dpmpp_2m"), **kw)
    with pytest.raises(ArgumentError, match="unknown SMC solver.*ddpm_ancestral"):
        smc.sample(target, particles=8, solver="nope", **kw)
    with pytest.raises(CapabilityError, match="noise_scale.*ddpm_ancestral.*eta"):
        smc.sample(target, particles=8, solver="ddpm_ancestral", noise_scale=2.0, **kw)
    with pytest.raises(CapabilityError, match="extra_noise"):
        smc.sample(target, particles=8, solver=DDPMAncestral(eta=0.5), extra_noise=1.0, **kw)
    tilted = smc.tilted(ring_mixture(2).field(PATH), lambda x: -(x**2).sum(-1), 1.0)
    with pytest.raises(CapabilityError, match="stochastic kernel"):
        smc.sample(tilted, particles=8, solver=DDPMAncestral(eta=0.0), **kw)
    assert {"euler_maruyama", "ddpm_ancestral", "dpmpp_2m_sde", "exponential"} <= set(smc.kernels())


@pytest.mark.parametrize("solver", ["euler_maruyama", "ddpm_ancestral", "dpmpp_2m_sde", "exponential"])
def test_the_loop_has_no_host_syncs(solver):
    """Host reads and host-to-device copies inside ``smc.sample`` grow with the steps only as much as
    in the kernel's ``init`` (which reads its CPU float64 coefficients before the loop): none in
    the loop itself (the validation before it and the one report after it do not depend on the
    steps)."""
    from flowbridge.samplers.diagnostics import LoopAudit

    target = smc.anneal(ring_mixture(2).field(PATH), 2.0)
    counts = []
    for steps in (4, 8):
        audit, init_audit = LoopAudit("cpu"), LoopAudit("cpu")
        with audit:
            smc.sample(target, shape=(16, 2), steps=steps, solver=solver, generator=torch.Generator().manual_seed(0), dtype=F64)
        kernel = get_kernel(solver, PATH, 1.0, 0.0)
        if kernel is not None:
            x = torch.zeros(16, 2, dtype=F64)
            with init_audit:
                kernel.init(target.field, x, torch.linspace(PATH.t_min, PATH.t_max, steps + 1, dtype=F64))
        counts.append((len(audit.host_reads) - len(init_audit.host_reads), len(audit.host_copies) - len(init_audit.host_copies)))
    assert counts[0] == counts[1], counts
