r"""Diffusion posterior sampling (DPS; Chung et al. 2022).

At node ``i`` the Tweedie estimate :math:`\hat x_1(x_t)` is pushed through the forward model and the
residual norm :math:`\ell(x_t) = \|y - A(\hat x_1(x_t))\|` is differentiated through the network:

.. math:: x_{t'} = \mathrm{DDIM}_\eta(x_t, \hat x_1) - \zeta\,\nabla_{x_t}\ell(x_t),

one NFE and one network backprop per step. With the gradient of the *norm* (not its square) the
step is self-normalising, as in the paper's :math:`\zeta_i = \zeta/\|y - A\hat x_1\|`. Biased even
with an exact prior score (the likelihood :math:`p(y|x_t)` is replaced by :math:`p(y|\hat x_1)`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError
from flowbridge.inverse.samplers.base import (
    Context, PosteriorSampler, PosteriorSamples, data_with_grad, ddim_step, gradient, register_posterior_sampler,
)
from flowbridge.random import RandomSource


@dataclass
class DPSState:
    x: Tensor


@register_posterior_sampler("dps")
class DPS(PosteriorSampler):
    """DPS: gradient of the residual norm at the Tweedie estimate.

    Args:
        step_size: :math:`\\zeta`.
        eta: DDIM stochasticity (1 = ancestral sampling, as in the paper).
    """

    needs_vjp = True
    network_backprop = True

    def __init__(self, step_size: float = 1.0, eta: float = 1.0) -> None:
        if step_size < 0 or not 0 <= eta <= 1:
            raise ArgumentError(f"need step_size >= 0 and 0 <= eta <= 1; got {step_size}, {eta}")
        self.step_size, self.eta = float(step_size), float(eta)

    def init(self, ctx: Context, x: Tensor, *, generator: RandomSource) -> DPSState:
        return DPSState(x=x)

    def step(self, ctx: Context, state: DPSState, i: int, *, generator: RandomSource) -> DPSState:
        with torch.enable_grad():
            leaf, x1_hat = data_with_grad(ctx, state.x, i)
            residual = (ctx.y(x1_hat) - ctx.forward(x1_hat)).reshape(x1_hat.shape[0], -1)
            grad = gradient(residual.norm(dim=1), leaf)
        c = ctx.counters
        c.nfe, c.network_backprops, c.operator_calls, c.adjoint_calls = c.nfe + 1, c.network_backprops + 1, c.operator_calls + 1, c.adjoint_calls + 1
        x = ddim_step(ctx.grid, i, state.x, x1_hat.detach(), self.eta, generator=generator)
        return DPSState(x=x - self.step_size * grad)

    def finish(self, ctx: Context, state: DPSState, *, generator: RandomSource) -> PosteriorSamples:
        return PosteriorSamples(x=state.x.detach(), nfe=ctx.counters.nfe, method=self.name, counters=ctx.counters)
