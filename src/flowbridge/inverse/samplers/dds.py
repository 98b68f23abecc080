r"""Decomposed diffusion sampling (DDS; Chung et al. 2023): Krylov data consistency + DDIM.

At node ``i``: the Tweedie estimate :math:`\hat x_1`, then ``cg_iterations`` conjugate-gradient steps
on :math:`(I + \gamma A^TA)\,x = \hat x_1 + \gamma A^Ty` started at :math:`\hat x_1` (the minimiser
of :math:`\|x - \hat x_1\|^2 + \gamma\|y - Ax\|^2`), then a DDIM(:math:`\eta`) step that keeps the
network's noise estimate :math:`\hat x_0 = (x_t - \alpha\hat x_1)/\sigma`. One NFE, no network
backprop; needs only ``forward`` and ``adjoint``.

``gamma="auto"`` uses :math:`\gamma_t = r_t^2/\sigma_y^2` with :math:`r_t^2 = \bar\sigma_t^2/(1+\bar\sigma_t^2)`:
the CG solution is then the posterior mean under :math:`x_1 | x_t \approx N(\hat x_1, r_t^2 I)`.
The paper's defaults are ``gamma = 1``, 5 CG iterations, ``eta = 0.85``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from flowbridge.errors import ArgumentError
from flowbridge.inverse.samplers.base import Context, PosteriorSampler, PosteriorSamples, register_posterior_sampler
from flowbridge.random import RandomSource, randn_like


@dataclass
class DDSState:
    x: Tensor


@register_posterior_sampler("dds")
class DDS(PosteriorSampler):
    """DDS.

    Args:
        gamma: data-consistency weight, a float >= 0 or ``"auto"``.
        cg_iterations: conjugate-gradient steps per node.
        eta: DDIM stochasticity.
    """

    needs_linear = True
    needs_gaussian_noise = True

    def __init__(self, gamma: float | str = 1.0, cg_iterations: int = 5, eta: float = 0.85) -> None:
        if gamma != "auto" and (not isinstance(gamma, (int, float)) or gamma < 0):
            raise ArgumentError(f"gamma must be a number >= 0 or 'auto'; got {gamma!r}")
        if not isinstance(cg_iterations, int) or cg_iterations < 0:
            raise ArgumentError(f"cg_iterations must be an integer >= 0; got {cg_iterations!r}")
        if not 0 <= eta <= 1:
            raise ArgumentError(f"eta must lie in [0, 1]; got {eta}")
        self.gamma, self.cg_iterations, self.eta = gamma, cg_iterations, float(eta)

    def init(self, ctx: Context, x: Tensor, *, generator: RandomSource) -> DDSState:
        ctx.cache["aty"] = ctx.measurement.operator.adjoint(ctx.y(x))
        return DDSState(x=x)

    def step(self, ctx: Context, state: DDSState, i: int, *, generator: RandomSource) -> DDSState:
        g, op = ctx.grid, ctx.measurement.operator
        x1_hat = ctx.denoise(state.x, i)
        if self.gamma == "auto":
            sb2 = g.sigma_bar(i) ** 2
            gamma = sb2 / (1 + sb2) / ctx.measurement.noise.sigma ** 2
        else:
            gamma = float(self.gamma)
        x1_dc = op.normal_solve(x1_hat + gamma * ctx.cache["aty"], gamma, x_init=x1_hat, iterations=self.cg_iterations)
        c = ctx.counters
        c.nfe += 1
        c.operator_calls += self.cg_iterations + 1
        c.adjoint_calls += self.cg_iterations + 1
        x0_hat = (state.x - g.alpha[i] * x1_hat) / g.sigma[i]
        c2 = self.eta**2 * g.bridge(i)[2]
        s1 = g.sigma[i + 1]
        x = g.alpha[i + 1] * x1_dc + math.sqrt(max(s1 * s1 - c2, 0.0)) * x0_hat
        if c2 > 0:
            x = x + math.sqrt(c2) * randn_like(x, generator=generator)
        return DDSState(x=x)

    def finish(self, ctx: Context, state: DDSState, *, generator: RandomSource) -> PosteriorSamples:
        return PosteriorSamples(x=state.x, nfe=ctx.counters.nfe, method=self.name, counters=ctx.counters)
