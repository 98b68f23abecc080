r"""Preconditioned Crank–Nicolson Langevin (pCNL) initial particles: the Ψ-sampler's initialisation.

For a tilted target the initial particles should follow the reward-aware law over the source noise

.. math::
    \pi(x) \propto N(x; 0, C)\,e^{\Phi(x)}, \qquad C = \sigma_0^2 I, \qquad \Phi = \phi_0 = r(\hat x_1(x, t_0))/\lambda .

Preconditioned Langevin dynamics :math:`dx = \tfrac12(-x + C\nabla\Phi)\,d\tau + dW_C` leaves
:math:`\pi` invariant; discretising the linear part with Crank–Nicolson
(:math:`x \to \tfrac12(x + x')`) and the potential explicitly, with step :math:`2\delta`, gives

.. math::
    x' = a\,x + b\,C\nabla\Phi(x) + c\,\xi, \quad \xi \sim N(0, C), \quad
    a = \frac{2-\delta}{2+\delta},\; b = \frac{2\delta}{2+\delta},\; c = \frac{\sqrt{8\delta}}{2+\delta},

with :math:`a^2 + c^2 = 1`, so that without the potential the move is the prior-reversible pCN
move and the acceptance rate does not degrade with dimension. A Metropolis–Hastings test with the
exact Gaussian proposal density makes :math:`\pi` exactly invariant. Without a gradient
(``gradient=False`` or a non-differentiable reward) the move is pCN.

``N`` independent chains run in parallel, one per particle, all started from :math:`N(0, C)`; the
final states are the initial particles, equally weighted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError
from flowbridge.random import RandomSource, rand, randn, randn_like
from flowbridge.smc.base import InitialParticles, sum_features
from flowbridge.smc.coefficients import StepCoefficients
from flowbridge.smc.tilted import TiltedTarget


@dataclass(frozen=True)
class PCNL:
    """pCNL initialisation options.

    Attributes:
        steps: MCMC iterations per chain (each costs one field evaluation, plus a backward pass
            when gradients are used).
        step_size: :math:`\\delta > 0`; 0.1–1 are typical (acceptance falls as it grows).
    """

    steps: int = 50
    step_size: float = 0.5

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ArgumentError(f"PCNL steps must be a positive integer; got {self.steps!r}")
        if not (math.isfinite(self.step_size) and self.step_size > 0):
            raise ArgumentError(f"PCNL step_size must be a finite number > 0; got {self.step_size!r}")


def _log_target(x: Tensor, phi: Tensor, var: float) -> Tensor:
    return phi - 0.5 * sum_features(x * x) / var


def _log_proposal(to: Tensor, frm: Tensor, grad: Tensor | None, a: float, b: float, c: float, var: float) -> Tensor:
    mean = a * frm + (b * var * grad if grad is not None else 0.0)
    return -0.5 * sum_features((to - mean) ** 2) / (c * c * var)


def pcnl_initial(
    target: TiltedTarget, options: PCNL, n: int, shape: tuple[int, ...], c: StepCoefficients, *,
    generator: RandomSource, dtype: torch.dtype, device: torch.device,
) -> InitialParticles:
    """Runs ``n`` parallel pCNL chains on :math:`\\pi` and returns their final states.

    The returned particles carry ``includes_potential=True`` (their law already contains
    :math:`e^{\\phi_0}`) and an unknown initial normaliser (``log_normalizer=None``).
    """
    if not isinstance(target, TiltedTarget):
        raise ArgumentError(f"pCNL initialisation applies to reward-tilted targets (tilted(...)); got {type(target).__name__}")
    var = c.sigma0**2
    delta = options.step_size
    a, b, cc = (2 - delta) / (2 + delta), 2 * delta / (2 + delta), math.sqrt(8 * delta) / (2 + delta)
    t0 = c.t[0]
    x = randn((n, *shape), generator=generator, dtype=dtype, device=device) * c.sigma0
    target.check_reward(x, c)
    use_grad = target.resolve_gradient(x, t0)
    tw = target.twist(x, t0, with_grad=use_grad)
    phi, grad = tw.potential, tw.grad
    accepted = torch.zeros((), dtype=dtype, device=device)
    for _ in range(options.steps):
        prop = a * x + (b * var * grad if grad is not None else 0.0) + cc * c.sigma0 * randn_like(x, generator=generator)
        tw_p = target.twist(prop, t0, with_grad=use_grad)
        log_ratio = (
            _log_target(prop, tw_p.potential, var) + _log_proposal(x, prop, tw_p.grad, a, b, cc, var)
            - _log_target(x, phi, var) - _log_proposal(prop, x, grad, a, b, cc, var)
        )
        # NaN ratios (e.g. -inf potentials on both sides) reject.
        accept = torch.log(rand((n,), generator=generator, dtype=dtype, device=device)) < log_ratio
        mask = accept.reshape(n, *([1] * (x.ndim - 1)))
        x = torch.where(mask, prop, x)
        phi = torch.where(accept, tw_p.potential, phi)
        if grad is not None and tw_p.grad is not None:
            grad = torch.where(mask, tw_p.grad, grad)
        accepted = accepted + accept.to(dtype).mean()
    return InitialParticles(
        x=x, log_weights=torch.zeros(n, dtype=dtype, device=device), log_normalizer=None,
        nfe=options.steps + 1, acceptance=accepted / options.steps, includes_potential=True,
    )
