r"""Decoupled annealing posterior sampling (DAPS; Zhang et al. 2024).

For each annealing node :math:`t_k` (noisy to clean):

1. :math:`\hat x_1` from a short probability-flow ODE (``ode_steps`` deterministic DDIM steps from
   :math:`t_k` to the clean node; ``ode_steps = 1`` is Tweedie's estimate);
2. ``mcmc_steps`` of MCMC on :math:`\pi(x_1) \propto N(x_1; \hat x_1, r_k^2 I)\,p(y \mid A(x_1))` with
   :math:`r_k = \bar\sigma_k` (the paper's :math:`r_t = \sigma_t` in VE units): Metropolis-adjusted Langevin (needs the operator's vjp, never the
   network's) or random-walk Metropolis (forward evaluations only);
3. re-noise: :math:`x_{t_{k+1}} = \alpha_{k+1} x_1 + \sigma_{k+1}\,\xi`.

Approximate (the decoupled Gaussian :math:`p(x_1|x_t) \approx N(\hat x_1, r^2 I)`); each sample runs
its own chain, so samples never interact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError
from flowbridge.inverse.samplers.base import Context, PosteriorSampler, PosteriorSamples, TimeGrid, register_posterior_sampler
from flowbridge.random import RandomSource, rand, randn_like


@dataclass
class DAPSState:
    x: Tensor


@register_posterior_sampler("daps")
class DAPS(PosteriorSampler):
    """DAPS.

    Args:
        ode_steps: PF-ODE steps for the data estimate at every node (NFE per node).
        mcmc: ``"langevin"``, ``"metropolis"`` or ``"auto"`` (Langevin when the operator is differentiable).
        mcmc_steps: MCMC iterations per node.
        step_scale: Langevin step :math:`h = ` ``step_scale`` :math:`\\cdot v`, Metropolis proposal
            std ``step_scale`` :math:`\\cdot\\sqrt v`, with :math:`v = (1/r^2 + 1/\\sigma_y^2)^{-1}`
            (:math:`v = r^2` for non-Gaussian noise).
    """

    default_particles = 1

    def __init__(self, ode_steps: int = 1, mcmc: str = "auto", mcmc_steps: int = 50, step_scale: float | None = None) -> None:
        if mcmc not in ("auto", "langevin", "metropolis"):
            raise ArgumentError(f"mcmc must be 'auto', 'langevin' or 'metropolis'; got {mcmc!r}")
        if not isinstance(ode_steps, int) or ode_steps < 1 or not isinstance(mcmc_steps, int) or mcmc_steps < 1:
            raise ArgumentError(f"ode_steps and mcmc_steps must be integers >= 1; got {ode_steps!r}, {mcmc_steps!r}")
        self.ode_steps, self.mcmc, self.mcmc_steps, self.step_scale = ode_steps, mcmc, mcmc_steps, step_scale

    def _kind(self, ctx: Context) -> str:
        if self.mcmc == "auto":
            return "langevin" if ctx.measurement.operator.differentiable else "metropolis"
        return self.mcmc

    def check(self, field, measurement, particles):  # type: ignore[no-untyped-def]
        super().check(field, measurement, particles)
        if self.mcmc == "langevin" and not measurement.operator.differentiable:
            raise ArgumentError(
                f"daps with mcmc='langevin' needs gradients through the forward model, but "
                f"{type(measurement.operator).__name__} has differentiable=False; use mcmc='metropolis'"
            )

    def init(self, ctx: Context, x: Tensor, *, generator: RandomSource) -> DAPSState:
        g = ctx.grid
        sub = []
        for i in range(g.steps):
            # PF-ODE sub-grid from node i to the clean node, in the same path's times.
            times = torch.linspace(g.t[i], g.t[-2], self.ode_steps, dtype=torch.float64) if self.ode_steps > 1 else torch.tensor([g.t[i]], dtype=torch.float64)
            v = ctx.field.gaussian_path.schedule(times)
            sub.append(TimeGrid(tuple(times.tolist()) + (1.0,), tuple(v.alpha.tolist()) + (1.0,), tuple(v.sigma.tolist()) + (0.0,)))
        ctx.cache["ode_grids"] = sub
        return DAPSState(x=x)

    def _ode_data(self, ctx: Context, x: Tensor, i: int) -> Tensor:
        sub: TimeGrid = ctx.cache["ode_grids"][i]
        for j in range(sub.steps):
            tt = torch.full((x.shape[0],), sub.t[j], dtype=x.dtype, device=x.device)
            x1_hat = ctx.field.data(x, tt)
            ctx.counters.nfe += 1
            x = sub.alpha[j + 1] * x1_hat + sub.sigma[j + 1] * (x - sub.alpha[j] * x1_hat) / sub.sigma[j]
        return x

    def _log_target(self, ctx: Context, x1: Tensor, center: Tensor, r2: float) -> Tensor:
        prior = -0.5 * ((x1 - center) ** 2).reshape(x1.shape[0], -1).sum(1) / r2
        return prior + ctx.measurement.log_likelihood(x1)

    def _log_target_and_grad(self, ctx: Context, x1: Tensor, center: Tensor, r2: float) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            leaf = x1.detach().requires_grad_(True)
            log_p = self._log_target(ctx, leaf, center, r2)
            (grad,) = torch.autograd.grad(log_p.sum(), leaf)
        return log_p.detach(), grad

    def step(self, ctx: Context, state: DAPSState, i: int, *, generator: RandomSource) -> DAPSState:
        g, noise = ctx.grid, ctx.measurement.noise
        center = self._ode_data(ctx, state.x, i)
        r2 = max(g.sigma_bar(i) ** 2, 1e-12)
        v = 1.0 / (1.0 / r2 + 1.0 / noise.sigma**2) if noise.gaussian else r2
        kind = self._kind(ctx)
        x1 = center
        if kind == "langevin":
            # Metropolis-adjusted Langevin: the likelihood's curvature is unknown, and an unadjusted
            # step that is too large diverges; rejected moves simply stay put.
            h = (0.1 if self.step_scale is None else self.step_scale) * v
            log_p, grad = self._log_target_and_grad(ctx, x1, center, r2)
            for _ in range(self.mcmc_steps):
                proposal = x1 + h * grad + math.sqrt(2 * h) * randn_like(x1, generator=generator)
                log_q, grad_q = self._log_target_and_grad(ctx, proposal, center, r2)
                forward = -((proposal - x1 - h * grad) ** 2).reshape(x1.shape[0], -1).sum(1) / (4 * h)
                backward = -((x1 - proposal - h * grad_q) ** 2).reshape(x1.shape[0], -1).sum(1) / (4 * h)
                u = rand((x1.shape[0],), generator=generator, dtype=x1.dtype, device=x1.device)
                accept = torch.log(u) < log_q - log_p + backward - forward
                shape = (-1, *([1] * (x1.ndim - 1)))
                x1 = torch.where(accept.reshape(shape), proposal, x1)
                grad = torch.where(accept.reshape(shape), grad_q, grad)
                log_p = torch.where(accept, log_q, log_p)
            ctx.counters.adjoint_calls += self.mcmc_steps + 1
        else:
            tau = (1.0 if self.step_scale is None else self.step_scale) * math.sqrt(v)
            log_p = self._log_target(ctx, x1, center, r2)
            for _ in range(self.mcmc_steps):
                proposal = x1 + tau * randn_like(x1, generator=generator)
                log_q = self._log_target(ctx, proposal, center, r2)
                u = rand((x1.shape[0],), generator=generator, dtype=x1.dtype, device=x1.device)
                accept = torch.log(u) < log_q - log_p
                x1 = torch.where(accept.reshape(-1, *([1] * (x1.ndim - 1))), proposal, x1)
                log_p = torch.where(accept, log_q, log_p)
        ctx.counters.operator_calls += self.mcmc_steps
        a1, s1 = g.alpha[i + 1], g.sigma[i + 1]
        x = a1 * x1.detach() + (s1 * randn_like(x1, generator=generator) if s1 > 0 else 0.0)
        return DAPSState(x=x)

    def finish(self, ctx: Context, state: DAPSState, *, generator: RandomSource) -> PosteriorSamples:
        return PosteriorSamples(x=state.x, nfe=ctx.counters.nfe, method=self.name, counters=ctx.counters)
