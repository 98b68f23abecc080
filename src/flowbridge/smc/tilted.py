r"""Reward-tilted SMC: sample :math:`q(x) \propto p(x)\,e^{r(x)/\lambda}` with twisted proposals.

The reference is the discretised marginal-preserving SDE of ``field`` (drift
:math:`b = u + \epsilon s = \kappa x + (\eta + \epsilon)s`), a Gaussian chain
:math:`x_{i+1} \sim N(m_i(x_i), V_i)`: the exponential move of :mod:`flowbridge.smc.coefficients`
or Euler–Maruyama, :math:`m_i = x_i + h_i b`, :math:`V_i = 2\epsilon_i h_i`. The intermediate targets twist it with the
reward at the denoised estimate,

.. math::
    \tilde q_i(x) = \pi_i(x)\,e^{\phi_i(x)}, \qquad \phi_i(x) = r(\hat x_1(x, t_i))/\lambda,
    \qquad \phi_S(x) = r(x)/\lambda,

where :math:`\pi_i` is the reference chain's marginal. Particles move with the twisted proposal
:math:`N(m_i + V_i\nabla\phi_i, V_i)` (gradient-based, when :math:`r` is differentiable: the
Gaussian kernel times :math:`e^{\phi}` linearised; for Euler–Maruyama the shift is the Doob drift
:math:`2\epsilon\nabla\phi` times :math:`h`) or with the reference itself (gradient-free). The
incremental weight is the exact discrete-time importance ratio, with :math:`x_{i+1} = m_i +
V_i\nabla\phi_i + \sqrt{V_i}\,z`,

.. math::
    \log w_{i+1} - \log w_i = \phi_{i+1}(x_{i+1}) - \phi_i(x_i)
        + \log\frac{N(x_{i+1}; m_i, V_i)}{N(x_{i+1}; m_i + V_i\nabla\phi_i, V_i)}
      = \phi_{i+1} - \phi_i - \sqrt{V_i}\,z\cdot\nabla\phi_i - \tfrac12 V_i|\nabla\phi_i|^2,

so the weighted particles target the reference chain's final law times :math:`e^{r/\lambda}` however
good the twist is (the twist only moves variance). Initial particles are the reference source
:math:`N(0, \sigma_0^2 I)` with log-weights :math:`\phi_0`, so :math:`\frac1N\sum w` estimates
:math:`E_p[e^{r/\lambda}]`; or pCNL draws from :math:`N(0,\sigma_0^2 I)e^{\phi_0}` (Ψ-sampler) with
equal weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError, CapabilityError
from flowbridge.fields.base import Field
from flowbridge.paths.gaussian import GaussianPath
from flowbridge.random import RandomSource, randn, randn_like
from flowbridge.smc.base import InitialParticles, MoveResult, PointCache, PointField, SMCTarget, sum_features, validate_log_potential
from flowbridge.smc.coefficients import StepCoefficients

Reward = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class TiltedCache(PointCache):
    """The field's prediction and posterior means (N, ...) (``None`` at the final time), twist
    :math:`\\phi` (N,) and its gradient (N, ...) or ``None``."""

    prediction: Tensor | None
    data: Tensor | None
    noise: Tensor | None
    potential: Tensor
    grad: Tensor | None


@dataclass(frozen=True)
class Twist:
    """Potential, its gradient, the field's prediction and the posterior means at some particles
    (internal)."""

    potential: Tensor
    grad: Tensor | None
    prediction: Tensor
    x1_hat: Tensor
    x0_hat: Tensor


class TiltedTarget(SMCTarget):
    r"""The tilted target :math:`p(x)\,e^{r(x)/\lambda}` of a field on a Gaussian path.

    Args:
        field: the prior field.
        reward: ``r(x) -> (N,)``, evaluated on batches shaped like the particles.
        lam: temperature :math:`\lambda > 0`.
        gradient: use :math:`\nabla\phi` in the proposal (``True``), the plain reference (``False``)
            or decide from whether ``reward`` propagates gradients (``None``).
    """

    def __init__(self, field: Field, reward: Reward, lam: float, *, gradient: bool | None = None) -> None:
        if not isinstance(field, Field):
            raise ArgumentError(f"field must be a flowbridge Field; got {type(field).__name__}")
        if not isinstance(field.path, GaussianPath):
            raise CapabilityError(f"reward-tilted SMC needs a field on a GaussianPath; got path {field.path!r}")
        if not callable(reward):
            raise ArgumentError(f"reward must be callable r(x) -> (N,); got {type(reward).__name__}")
        if not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam > 0):
            raise ArgumentError(f"lam must be a finite number > 0; got {lam!r}")
        if gradient not in (None, True, False):
            raise ArgumentError(f"gradient must be True, False or None (auto); got {gradient!r}")
        self.field, self.reward, self.lam, self.gradient = field, reward, float(lam), gradient
        self.path = field.path

    needs_noise = True

    def __repr__(self) -> str:
        return f"TiltedTarget(lam={self.lam}, gradient={self.gradient}, path={self.path!r})"

    def _reward(self, x: Tensor) -> Tensor:
        return self.reward(x) / self.lam

    def twist(self, x: Tensor, t: Tensor, *, with_grad: bool) -> Twist:
        r""":math:`\phi(x) = r(\hat x_1(x, t))/\lambda` (and its gradient) from one field evaluation."""
        if not with_grad:
            out, (x1_hat, x0_hat) = self._predict(x, t)
            return Twist(self._reward(x1_hat).detach(), None, out.detach(), x1_hat.detach(), x0_hat.detach())
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            out, (x1_hat, x0_hat) = self._predict(xg, t)
            phi = self._reward(x1_hat)
            (grad,) = torch.autograd.grad(phi.sum(), xg)
        return Twist(phi.detach(), grad, out.detach(), x1_hat.detach(), x0_hat.detach())

    def _predict(self, x: Tensor, t: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        f = self.field
        out = f.predict(x, t)
        return out, self.path.to_posterior_means(out, f.parametrisation, x, t)

    def _means(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        return self._predict(x, t)[1]

    def resolve_gradient(self, x: Tensor, t: Tensor) -> bool:
        """``gradient`` if set, else whether the reward is differentiable at the denoised ``x``."""
        if self.gradient is not None:
            return self.gradient
        with torch.enable_grad():
            probe = self._means(x[:2].detach().requires_grad_(True), t)[0]
            return bool(self._reward(probe).requires_grad)

    def initial(
        self, n: int, shape: tuple[int, ...], c: StepCoefficients, *, generator: RandomSource,
        dtype: torch.dtype, device: torch.device,
    ) -> InitialParticles:
        x = randn((n, *shape), generator=generator, dtype=dtype, device=device) * c.sigma0
        self.check_reward(x, c)
        # The initial log-weights phi_0 are added by start(), from the first evaluation.
        return InitialParticles(
            x=x, log_weights=torch.zeros(n, dtype=dtype, device=device),
            log_normalizer=torch.zeros((), dtype=dtype, device=device),
        )

    def check_reward(self, x: Tensor, c: StepCoefficients) -> None:
        """Validates the reward's output on ``x`` at the first grid time (once, before the loop)."""
        if c.steps > 0 and float(c.eps[0]) <= 0:  # sync-ok: a grid coefficient, checked once
            raise ArgumentError("reward-tilted SMC needs a stochastic reference: noise_scale must be > 0")
        x1_hat = self._means(x, c.t[0])[0].detach()
        validate_log_potential(self.reward(x1_hat), x.shape[0], "reward")
        validate_log_potential(self.reward(x.detach()), x.shape[0], "reward")

    def start(self, init: InitialParticles, c: StepCoefficients, *, final: bool) -> tuple[PointCache, Tensor]:
        """Evaluates the twist at the initial particles; weights them by :math:`\\phi_0` unless they
        were drawn from the twisted initial law already."""
        with_grad = self.resolve_gradient(init.x, c.t[0]) if not final else False
        cache = self.evaluate(init.x, 0, c, final=final, with_grad=with_grad)
        if init.includes_potential:
            return cache, init.log_weights
        return cache, init.log_weights + cache.potential

    def evaluate(self, x: Tensor, i: int, c: StepCoefficients, *, final: bool, with_grad: bool = False) -> TiltedCache:
        if final:
            # The last target is the tilt itself, r(x)/lambda, not r at a denoised estimate.
            return TiltedCache(prediction=None, data=None, noise=None, potential=self._reward(x).detach(), grad=None)
        tw = self.twist(x, c.t[i], with_grad=with_grad)
        return TiltedCache(prediction=tw.prediction, data=tw.x1_hat, noise=tw.x0_hat, potential=tw.potential, grad=tw.grad)

    def kernel_field(self, x: Tensor, cache: PointCache) -> PointField:
        assert isinstance(cache, TiltedCache) and cache.prediction is not None
        return PointField(self.field, x, cache.prediction, self.field.parametrisation)

    def builtin_mean(self, x: Tensor, cache: PointCache, i: int, c: StepCoefficients) -> Tensor:
        assert isinstance(cache, TiltedCache) and cache.data is not None and cache.noise is not None
        if c.move == "exponential":
            return c.decay[i] * x + c.gain[i] * cache.data
        t = c.t[i]
        u = self.path.from_posterior_means(cache.data, cache.noise, "velocity", x, t)
        s = self.path.from_posterior_means(cache.data, cache.noise, "score", x, t)
        return x + c.h[i] * (u + c.eps[i] * s)

    def advance(
        self, x: Tensor, cache: PointCache, mean: Tensor, std: Tensor | float, i: int, c: StepCoefficients, *,
        generator: RandomSource, weight_rule: str, final: bool,
    ) -> MoveResult:
        assert isinstance(cache, TiltedCache)
        z = randn_like(x, generator=generator)
        x_new = mean + std * z
        log_ratio = torch.zeros_like(cache.potential)
        if cache.grad is not None:
            # Proposal N(m + V grad, V) against the reference N(m, V):
            # log ratio = -sqrt(V) z.grad - V |grad|^2 / 2.
            x_new = x_new + std**2 * cache.grad
            log_ratio = -std * sum_features(z * cache.grad) - 0.5 * std**2 * sum_features(cache.grad**2)
        new = self.evaluate(x_new, i + 1, c, final=final, with_grad=cache.grad is not None)
        # -inf potentials are hard zeros: keep them -inf instead of forming -inf - (-inf) = NaN.
        dead = torch.isneginf(new.potential) | torch.isneginf(cache.potential)
        inc = torch.where(dead, torch.full_like(log_ratio, -math.inf), new.potential - cache.potential + log_ratio)
        return MoveResult(x_new, new, inc)

    def nfe(self, steps: int, weight_rule: str) -> int:
        return steps


def tilted(field: Field, reward: Reward, lam: float = 1.0, *, gradient: bool | None = None) -> TiltedTarget:
    r"""The reward-tilted target :math:`p(x)\,e^{r(x)/\lambda}`; see :class:`TiltedTarget`."""
    return TiltedTarget(field, reward, lam, gradient=gradient)
