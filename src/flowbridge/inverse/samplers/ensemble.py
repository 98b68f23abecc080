r"""Derivative-free weighted-particle ensemble sampler: asymptotically exact with forward calls only.

In the spirit of the approximation-free ensemble sampler (weighted particles whose weights correct
everything the moves get wrong), written here as sequential Monte Carlo on the prior's discretised
reverse chain:

* twisting functions from forward evaluations only, :math:`\tilde p_k(y|x) = p(y \mid A(\hat x_1(x)))`
  with the Gaussian variance inflated to :math:`\sigma_y^2 + \rho\,r_k^2`
  (:math:`r_k^2 = v\bar\sigma_k^2/(v+\bar\sigma_k^2)`, flat-prior :math:`\bar\sigma_k^2` by default, as in TDS),
  and the exact likelihood at the clean node;
* moves: TDS's twisted kernel, the prior's ancestral kernel with the data estimate shifted by
  :math:`(\sigma^2/\alpha)\nabla_x\log\tilde p_k`, where the gradient
  :math:`J^T\Gamma^{-1}(y - A(\hat x_1))` of the Gaussian twist is replaced by the group's statistical
  linearisation of :math:`x \mapsto A(\hat x_1(x))` (:func:`~flowbridge.inverse.samplers.kalman.ensemble_gradient`;
  Gaussian noise only, ``guidance_scale = 0`` gives plain bootstrap moves). (An ensemble *Kalman*
  shift of :math:`\hat x_1` was tried first: it uses the spread of :math:`E[x_1|x_t]` where the spread of
  :math:`x_1` given :math:`x_t` is needed, overshoots at low noise and collapsed the ESS);
* weights :math:`p_\theta(x'|x)\,\tilde p_{k+1}(x') / (q(x'|x)\,\tilde p_k(x))`, resampling when the
  ESS drops, so the target is the exact posterior of the discretised prior chain.

No gradient of the network or of the forward model is ever taken: it runs on black-box operators
(``differentiable=False``). One NFE and one forward call per particle and step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError
from flowbridge.inverse.resampling import resample_if_degenerate
from flowbridge.inverse.samplers.base import Context, PosteriorSampler, PosteriorSamples, register_posterior_sampler
from flowbridge.inverse.samplers.kalman import ensemble_gradient
from flowbridge.inverse.samplers.particles import gaussian_log_density, particle_result, per_particle, twist_variance
from flowbridge.metrics import effective_sample_size
from flowbridge.random import RandomSource, randn_like


@dataclass
class EnsembleState:
    x: Tensor
    x1_hat: Tensor
    forward_values: Tensor
    log_twist: Tensor
    log_weights: Tensor
    min_ess: Tensor


@register_posterior_sampler("ensemble")
class Ensemble(PosteriorSampler):
    """Weighted-particle ensemble sampler.

    Args:
        inflation: :math:`\\rho` in the twisting variance.
        guidance_scale: multiplies the derivative-free guidance of the proposal (0 disables it).
        resample_threshold: ESS fraction below which a group is resampled.
        data_variance: :math:`v` in :math:`r_k^2` (``math.inf``: flat prior).
    """

    uses_particles = True
    exact = True
    default_particles = 64

    def __init__(
        self, inflation: float = 1.0, guidance_scale: float = 1.0, resample_threshold: float = 0.5, data_variance: float = math.inf
    ) -> None:
        if inflation < 0 or guidance_scale < 0 or not 0 <= resample_threshold <= 1 or not data_variance > 0:
            raise ArgumentError(
                f"need inflation >= 0, guidance_scale >= 0, resample_threshold in [0, 1], data_variance > 0; got "
                f"{inflation}, {guidance_scale}, {resample_threshold}, {data_variance}"
            )
        self.inflation, self.guidance_scale, self.resample_threshold = float(inflation), float(guidance_scale), float(resample_threshold)
        self.data_variance = float(data_variance)

    def _gamma(self, ctx: Context, i: int) -> float:
        return twist_variance(ctx.measurement.noise.sigma, ctx.grid.sigma_bar(i), self.inflation, self.data_variance)

    def _evaluate(self, ctx: Context, x: Tensor, i: int) -> tuple[Tensor, Tensor, Tensor]:
        groups = ctx.cache["groups"]
        noise = ctx.measurement.noise
        x1_hat = x if i == ctx.grid.steps else ctx.denoise(x, i)
        values = ctx.forward(x1_hat)
        if i < ctx.grid.steps:
            ctx.counters.nfe += 1
        ctx.counters.operator_calls += 1
        if i < ctx.grid.steps and noise.gaussian:
            flat = gaussian_log_density(ctx.y(values), values, self._gamma(ctx, i)).reshape(values.shape[0], -1).sum(1)
        else:
            flat = noise.log_prob(ctx.y(values), values)
        return x1_hat, values, flat.reshape(groups, -1)

    def init(self, ctx: Context, x: Tensor, *, generator: RandomSource) -> EnsembleState:
        x1_hat, values, log_twist = self._evaluate(ctx, x, 0)
        p = log_twist.shape[1]
        return EnsembleState(x, x1_hat, values, log_twist, log_twist.clone(), torch.full((log_twist.shape[0],), float(p), dtype=x.dtype, device=x.device))

    def step(self, ctx: Context, state: EnsembleState, i: int, *, generator: RandomSource) -> EnsembleState:
        g = ctx.grid
        groups = ctx.cache["groups"]
        p = state.log_weights.shape[1]
        view = lambda t: t.reshape(groups, p, *t.shape[1:])  # noqa: E731
        flat = lambda t: t.reshape(groups * p, *t.shape[2:])  # noqa: E731
        c_x, c_1, var = g.bridge(i)
        mean = c_x * state.x + c_1 * state.x1_hat
        if var > 0:
            shifted = mean
            if self.guidance_scale > 0 and ctx.measurement.noise.gaussian:
                residual = (ctx.y(state.forward_values) - state.forward_values) / self._gamma(ctx, i)
                grad = ensemble_gradient(view(state.x), view(state.forward_values), view(residual))
                shifted = mean + (c_1 * self.guidance_scale * g.sigma[i] ** 2 / g.alpha[i]) * flat(grad)
            x = shifted + math.sqrt(var) * randn_like(mean, generator=generator)
            log_ratio = per_particle(gaussian_log_density(x, mean, var) - gaussian_log_density(x, shifted, var), groups)
        else:
            x, log_ratio = mean, torch.zeros_like(state.log_weights)
        x1_hat, values, log_twist = self._evaluate(ctx, x, i + 1)
        log_w = state.log_weights + log_ratio + log_twist - state.log_twist
        min_ess = torch.minimum(state.min_ess, effective_sample_size(log_w, dim=1))
        xs, log_w, (x1s, vs, lts) = resample_if_degenerate(
            view(x), log_w, self.resample_threshold, generator=generator, extra=(view(x1_hat), view(values), log_twist)
        )
        return EnsembleState(flat(xs), flat(x1s), flat(vs), lts, log_w, min_ess)

    def finish(self, ctx: Context, state: EnsembleState, *, generator: RandomSource) -> PosteriorSamples:
        return particle_result(ctx, self.name, state.x, state.log_weights, state.min_ess, generator=generator)
