r"""Denoising diffusion restoration models (DDRM; Kawar et al. 2022), in SVD coordinates.

Work with :math:`\bar x = x/\alpha` (noise level :math:`\bar\sigma = \sigma/\alpha`) and spectral
coordinates :math:`z = V^T\bar x`, :math:`\hat z = V^T\hat x_1`. An observed coordinate
(:math:`s_i > 0`) sees :math:`\tilde y_i = (U^T y)_i/s_i = z_{1,i} + \kappa_i\epsilon`,
:math:`\kappa_i = \sigma_y/s_i`. From :math:`\bar\sigma` to :math:`\bar\sigma'`:

* unobserved: :math:`z' = \hat z + \sqrt{1-\eta^2}\,\bar\sigma'(z - \hat z)/\bar\sigma + \eta\bar\sigma'\xi`;
* observed, :math:`\bar\sigma' < \kappa`: :math:`z' = \hat z + \sqrt{1-\eta^2}\,\bar\sigma'(\tilde y - \hat z)/\kappa + \eta\bar\sigma'\xi`;
* observed, :math:`\bar\sigma' \ge \kappa`: :math:`z' = (1-\eta_b)\hat z + \eta_b\tilde y + \sqrt{\bar\sigma'^2 - \eta_b^2\kappa^2}\,\xi`.

One NFE per step, no backprop, Gaussian noise only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError
from flowbridge.inverse.samplers.base import Context, PosteriorSampler, PosteriorSamples, register_posterior_sampler
from flowbridge.random import RandomSource, randn_like


@dataclass
class DDRMState:
    x: Tensor


@register_posterior_sampler("ddrm")
class DDRM(PosteriorSampler):
    """DDRM with the paper's defaults ``eta = 0.85``, ``eta_b = 1``."""

    needs_svd = True
    needs_gaussian_noise = True

    def __init__(self, eta: float = 0.85, eta_b: float = 1.0) -> None:
        if not (0 <= eta <= 1 and 0 <= eta_b <= 1):
            raise ArgumentError(f"eta and eta_b must lie in [0, 1]; got {eta}, {eta_b}")
        self.eta, self.eta_b = float(eta), float(eta_b)

    def init(self, ctx: Context, x: Tensor, *, generator: RandomSource) -> DDRMState:
        dec = ctx.measurement.operator.svd()
        s = dec.s.to(x)
        mask = dec.mask.to(x.device)
        safe_s = torch.where(mask, s, torch.ones_like(s))
        sigma_y = ctx.measurement.noise.sigma
        ctx.cache.update(
            svd=dec, mask=mask,
            y_tilde=torch.where(mask, dec.ut(ctx.y(x)) / safe_s, torch.zeros_like(s)),
            kappa=torch.where(mask, sigma_y / safe_s, torch.full_like(s, math.inf)),
        )
        return DDRMState(x=x)

    def step(self, ctx: Context, state: DDRMState, i: int, *, generator: RandomSource) -> DDRMState:
        g, cache = ctx.grid, ctx.cache
        dec, mask, y_tilde, kappa = cache["svd"], cache["mask"], cache["y_tilde"], cache["kappa"]
        x1_hat = ctx.denoise(state.x, i)
        ctx.counters.nfe += 1
        ctx.counters.operator_calls += 1
        sb, sb_next = g.sigma_bar(i), g.sigma_bar(i + 1)
        z = dec.vt(state.x) / g.alpha[i]
        z_hat = dec.vt(x1_hat)
        xi = randn_like(z, generator=generator)
        keep = math.sqrt(1 - self.eta**2) * sb_next
        unobserved = z_hat + keep * (z - z_hat) / sb + self.eta * sb_next * xi
        finite_kappa = torch.where(mask, kappa, torch.ones_like(kappa))
        below = z_hat + keep * (y_tilde - z_hat) / finite_kappa + self.eta * sb_next * xi
        above_var = (sb_next**2 - (self.eta_b * finite_kappa) ** 2).clamp_min(0.0)
        above = (1 - self.eta_b) * z_hat + self.eta_b * y_tilde + torch.sqrt(above_var) * xi
        observed = torch.where(sb_next < finite_kappa, below, above)
        z_next = torch.where(mask, observed, unobserved)
        return DDRMState(x=g.alpha[i + 1] * dec.v(z_next))

    def finish(self, ctx: Context, state: DDRMState, *, generator: RandomSource) -> PosteriorSamples:
        return PosteriorSamples(x=state.x, nfe=ctx.counters.nfe, method=self.name, counters=ctx.counters)
