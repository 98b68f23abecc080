r"""Monte Carlo guided diffusion (MCGdiff; Cardoso et al., ICLR 2024): SMC in SVD coordinates.

Asymptotically exact for linear operators with an SVD and Gaussian noise, with no network
backprop. In :math:`\bar x = x/\alpha` and spectral coordinates :math:`z = V^T\bar x`, an observed
coordinate sees :math:`\tilde y_i = (U^Ty)_i/s_i = z_{1,i} + \kappa_i\epsilon`, :math:`\kappa_i = \sigma_y/s_i`.
The potentials are the flat-prior predictive densities of the observation at each noise level,

.. math:: g_k(z) = \prod_{i:\,s_i>0} N(\tilde y_i;\, z_i,\, \bar\sigma_k^2 + \kappa_i^2),

which become the exact likelihood at the clean node (:math:`\bar\sigma = 0`). The reverse kernel of
the prior is isotropic Gaussian, hence a product over spectral coordinates, so the locally optimal
proposal :math:`\propto p(z' | z)\,g_{k+1}(z')` and its normaliser are closed form: a fully adapted
auxiliary particle filter whose incremental weight
:math:`\prod_i N(\tilde y_i; \bar m_i, \bar v + \bar\sigma_{k+1}^2 + \kappa_i^2) / g_k(z)` depends on
the parent only, so particles are reweighted and resampled *before* they move.

(The paper's potentials use :math:`\bar\sigma_k^2 - \kappa_i^2` above the observation's noise level;
both choices give the same target, an exact posterior of the discretised prior chain.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError
from flowbridge.inverse.resampling import resample_if_degenerate
from flowbridge.inverse.samplers.base import Context, PosteriorSampler, PosteriorSamples, register_posterior_sampler
from flowbridge.inverse.samplers.particles import gaussian_log_density, particle_result
from flowbridge.metrics import effective_sample_size
from flowbridge.random import RandomSource, randn_like


@dataclass
class MCGdiffState:
    x: Tensor
    log_weights: Tensor
    log_potential: Tensor
    min_ess: Tensor


@register_posterior_sampler("mcgdiff")
class MCGdiff(PosteriorSampler):
    """MCGdiff.

    Args:
        resample_threshold: resample a group when its ESS falls below this fraction of its particles.
    """

    needs_svd = True
    needs_gaussian_noise = True
    uses_particles = True
    exact = True
    default_particles = 64

    def __init__(self, resample_threshold: float = 0.5) -> None:
        if not 0 <= resample_threshold <= 1:
            raise ArgumentError(f"resample_threshold must lie in [0, 1]; got {resample_threshold}")
        self.resample_threshold = float(resample_threshold)

    def _log_potential(self, ctx: Context, z: Tensor, var_extra: float) -> Tensor:
        c = ctx.cache
        var = var_extra + c["kappa2"]
        terms = torch.where(c["mask"], gaussian_log_density(c["y_tilde"], z, var), torch.zeros_like(z))
        return terms.sum(1).reshape(c["groups"], -1)

    def init(self, ctx: Context, x: Tensor, *, generator: RandomSource) -> MCGdiffState:
        dec = ctx.measurement.operator.svd()
        s = dec.s.to(x)
        mask = dec.mask.to(x.device)
        safe_s = torch.where(mask, s, torch.ones_like(s))
        groups = ctx.cache["groups"]
        ctx.cache.update(
            svd=dec, mask=mask,
            y_tilde=torch.where(mask, dec.ut(ctx.y(x)) / safe_s, torch.zeros_like(s)),
            kappa2=torch.where(mask, (ctx.measurement.noise.sigma / safe_s) ** 2, torch.ones_like(s)),
        )
        log_g = self._log_potential(ctx, dec.vt(x) / ctx.grid.alpha[0], ctx.grid.sigma_bar(0) ** 2)
        p = log_g.shape[1]
        return MCGdiffState(x=x, log_weights=log_g, log_potential=log_g, min_ess=torch.full((groups,), float(p), dtype=x.dtype, device=x.device))

    def step(self, ctx: Context, state: MCGdiffState, i: int, *, generator: RandomSource) -> MCGdiffState:
        g, c = ctx.grid, ctx.cache
        dec, mask, y_tilde, kappa2 = c["svd"], c["mask"], c["y_tilde"], c["kappa2"]
        groups = c["groups"]
        x1_hat = ctx.denoise(state.x, i)
        ctx.counters.nfe += 1
        ctx.counters.operator_calls += 1
        c_x, c_1, var = g.bridge(i)
        a_next = g.alpha[i + 1]
        z_mean = dec.vt(c_x * state.x + c_1 * x1_hat) / a_next
        v_bar = var / a_next**2
        sb2_next = g.sigma_bar(i + 1) ** 2
        log_w = state.log_weights + self._log_potential(ctx, z_mean, v_bar + sb2_next) - state.log_potential
        min_ess = torch.minimum(state.min_ess, effective_sample_size(log_w, dim=1))
        p = log_w.shape[1]
        grouped = z_mean.reshape(groups, p, -1)
        grouped, log_w, _ = resample_if_degenerate(grouped, log_w, self.resample_threshold, generator=generator)
        z_mean = grouped.reshape(groups * p, -1)
        # Product of the prior kernel N(z_mean, v_bar) and the potential N(y_tilde; z, sb2 + kappa2).
        c_next = sb2_next + kappa2
        post_var = torch.where(mask, v_bar * c_next / (v_bar + c_next), torch.full_like(c_next, v_bar))
        post_mean = torch.where(mask, (c_next * z_mean + v_bar * y_tilde) / (v_bar + c_next), z_mean)
        z_next = post_mean + torch.sqrt(post_var) * randn_like(post_mean, generator=generator)
        log_g = self._log_potential(ctx, z_next, sb2_next)
        return MCGdiffState(x=a_next * dec.v(z_next), log_weights=log_w, log_potential=log_g, min_ess=min_ess)

    def finish(self, ctx: Context, state: MCGdiffState, *, generator: RandomSource) -> PosteriorSamples:
        return particle_result(ctx, self.name, state.x, state.log_weights, state.min_ess, generator=generator)
