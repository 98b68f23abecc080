r"""Exact log-likelihoods through the probability-flow ODE (instantaneous change of variables).

Along the probability-flow ODE :math:`\dot x = u(x, t)` the density obeys
:math:`\tfrac{d}{dt}\log p_t(x_t) = -\nabla\cdot u(x_t, t)`. Integrating the data point backward
from the target end :math:`t_1` to the source end :math:`t_0` with
:math:`\dot\ell = \nabla\cdot u`, :math:`\ell(t_1) = 0`, gives

.. math::
    \log p_{t_1}(x) = \log p_{t_0}(x_{t_0}) + \ell(t_0).

The divergence is exact (one vector–Jacobian product per dimension) up to ``exact_max_dim``
dimensions and Hutchinson's estimator :math:`\nabla\cdot u \approx \varepsilon^T (\partial u/\partial x)
\varepsilon` above, with Rademacher probes :math:`\varepsilon` drawn once per sample from
``generator`` and held fixed along the trajectory (FFJORD); the estimate of :math:`\ell` is then
unbiased. The ODE is solved by ``torchdiffeq.odeint`` (adaptive ``dopri5`` by default).

The source density defaults to :math:`N(0, \sigma(t_0)^2 I)` on a Gaussian path, which is exact
where :math:`\alpha(t_0) = 0` (``linear`` and ``trig`` at ``t_0 = 0``) and an approximation
otherwise (VP's and VE's cut-offs); pass ``prior_log_prob`` to override it (a stochastic
interpolant's source is data, so there it is required).

Gradients are taken internally with ``torch.enable_grad`` and by default the result is detached:
an evaluation routine, not a differentiable training loss. With ``differentiable=True`` the
divergence is taken with ``create_graph=True`` and nothing is detached, so autograd runs through the
solver's steps (direct backpropagation; use a fixed-step ``method`` such as ``rk4`` so that
:math:`\log p(x)` is a smooth function of ``x``): the gradient with respect to ``x`` is the
gradient of the discretised likelihood, as gradient-based MCMC (HMC/NUTS) needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

from flowbridge.errors import ArgumentError
from flowbridge.fields.base import Field
from flowbridge.paths.gaussian import GaussianPath
from flowbridge.paths.interpolant import StochasticInterpolant
from flowbridge.random import rand


@dataclass(frozen=True)
class LikelihoodResult:
    """Log-likelihoods of a batch.

    Attributes:
        log_prob: (B,) :math:`\\log p(x)` in nats.
        prior_log_prob: (B,) :math:`\\log p_{t_0}(x_{t_0})` at the source end.
        delta_log_prob: (B,) :math:`\\ell(t_0) = -\\int_{t_0}^{t_1}\\nabla\\cdot u\\,dt`.
        nats_per_dim: (B,) negative log-likelihood per dimension, :math:`-\\log p(x)/d`.
        bits_per_dim: (B,) the same in bits, :math:`-\\log_2 p(x)/d`.
        nfe: field evaluations used by the ODE solver.
        exact_divergence: whether the divergence was exact (else Hutchinson).
    """

    log_prob: Tensor
    prior_log_prob: Tensor
    delta_log_prob: Tensor
    nats_per_dim: Tensor
    bits_per_dim: Tensor
    nfe: int
    exact_divergence: bool


def _exact_divergence(u: Tensor, x: Tensor, create_graph: bool = False) -> Tensor:
    """:math:`\\sum_i \\partial u_i/\\partial x_i` per sample, one backward pass per dimension."""
    flat_u = u.reshape(u.shape[0], -1)
    div = torch.zeros(u.shape[0], dtype=u.dtype, device=u.device)
    for i in range(flat_u.shape[1]):
        grad = torch.autograd.grad(flat_u[:, i].sum(), x, retain_graph=True, create_graph=create_graph)[0]
        div = div + grad.reshape(grad.shape[0], -1)[:, i]
    return div


def _hutchinson_divergence(u: Tensor, x: Tensor, probe: Tensor, create_graph: bool = False) -> Tensor:
    """:math:`\\varepsilon^T (\\partial u/\\partial x)\\varepsilon` per sample (one backward pass)."""
    grad = torch.autograd.grad((u * probe).sum(), x, create_graph=create_graph)[0]
    return (grad * probe).reshape(x.shape[0], -1).sum(1)


def _default_prior(field: Field, t0: float) -> Callable[[Tensor], Tensor]:
    if isinstance(field.path, StochasticInterpolant):
        raise ArgumentError(
            "a stochastic interpolant's source is a data set with no known density: pass prior_log_prob=callable"
        )
    if not isinstance(field.path, GaussianPath):
        raise ArgumentError(f"this field's path {field.path!r} has no source density: pass prior_log_prob=callable")
    sigma = float(field.path.schedule(torch.tensor(t0, dtype=torch.float64)).sigma)

    def log_prob(x: Tensor) -> Tensor:
        flat = x.reshape(x.shape[0], -1)
        d = flat.shape[1]
        return -0.5 * (flat**2).sum(1) / sigma**2 - d * math.log(sigma) - 0.5 * d * math.log(2 * math.pi)

    return log_prob


def log_likelihood(
    field: Field,
    x: Tensor,
    *,
    t_span: tuple[float, float] | None = None,
    prior_log_prob: Callable[[Tensor], Tensor] | None = None,
    exact_max_dim: int = 64,
    hutchinson: bool | None = None,
    generator: torch.Generator | None = None,
    method: str = "dopri5",
    rtol: float = 1e-6,
    atol: float = 1e-6,
    options: dict[str, Any] | None = None,
    differentiable: bool = False,
) -> LikelihoodResult:
    """Log-likelihood of ``x`` under the target marginal of ``field`` via the probability-flow ODE.

    Args:
        field: any field with a ``velocity`` (network, analytic, guided).
        x: (B, ...) points at the target end.
        t_span: (t0, t1): integrate from ``t1`` (the data) back to ``t0`` (the source); default the
            path's regular interval.
        prior_log_prob: ``log p_{t0}`` of the source, (B, ...) -> (B,); default
            :math:`N(0, \\sigma(t_0)^2 I)` on a Gaussian path.
        exact_max_dim: use the exact divergence up to this many dimensions per sample.
        hutchinson: force (True) or forbid (False) Hutchinson's estimator; default by dimension.
        generator: draws the Hutchinson probes.
        method: ODE method, passed to ``torchdiffeq.odeint`` (a fixed-step method such as ``rk4``
            takes ``options={"step_size": h}``).
        rtol: relative tolerance, passed to ``torchdiffeq.odeint``.
        atol: absolute tolerance, passed to ``torchdiffeq.odeint``.
        options: solver options, passed to ``torchdiffeq.odeint``.
        differentiable: keep the autograd graph through the solve, so that ``log_prob`` can be
            differentiated with respect to ``x`` (and the field's parameters); default False
            (detached, cheaper).

    Returns:
        :class:`LikelihoodResult` with nats and bits per dimension.

    Raises:
        ValueError: on bad tolerances, spans or shapes, or a missing source density.
    """
    import torchdiffeq

    if not isinstance(field, Field):
        raise ArgumentError(f"field must be a flowbridge Field; got {type(field).__name__}")
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim < 2:
        raise ArgumentError(f"x must be a floating tensor of shape (B, ...); got {type(x).__name__} {getattr(x, 'shape', '')}")
    if not (rtol > 0 and atol > 0):
        raise ArgumentError(f"rtol and atol must be > 0; got rtol={rtol}, atol={atol}")
    if not isinstance(differentiable, bool):
        raise ArgumentError(f"differentiable must be a bool; got {type(differentiable).__name__}")
    if not isinstance(exact_max_dim, int) or exact_max_dim < 0:
        raise ArgumentError(f"exact_max_dim must be an integer >= 0; got {exact_max_dim!r}")
    if t_span is None:
        path = field.path
        t_span = (path.t_min, path.t_max) if isinstance(path, (GaussianPath, StochasticInterpolant)) else (0.0, 1.0)
    if not isinstance(t_span, (tuple, list)) or len(t_span) != 2:
        raise ArgumentError(f"t_span must be a pair (t0, t1); got {t_span!r}")
    t0, t1 = float(t_span[0]), float(t_span[1])
    if not 0.0 <= t0 < t1 <= 1.0:
        raise ArgumentError(f"t_span must satisfy 0 <= t0 < t1 <= 1; got {t_span}")
    if not bool(torch.isfinite(x).all()):  # sync-ok: validated once, before the ODE solve
        raise ArgumentError("x must be finite; it contains NaN or inf")
    prior = prior_log_prob if prior_log_prob is not None else _default_prior(field, t0)
    dim = x[0].numel()
    use_hutchinson = dim > exact_max_dim if hutchinson is None else bool(hutchinson)
    probe = None
    if use_hutchinson:
        # Rademacher probes: the lowest-variance choice among i.i.d. unit-variance probes.
        probe = (rand(x.shape, generator=generator, dtype=x.dtype, device=x.device) < 0.5).to(x.dtype) * 2 - 1
    nfe = 0

    def rhs(t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        nonlocal nfe
        nfe += 1
        with torch.enable_grad():
            if differentiable:
                # Keep the state's graph (back to x); only a state outside any graph needs a leaf.
                y = state[0] if state[0].requires_grad else state[0].detach().requires_grad_(True)
            else:
                y = state[0].detach().requires_grad_(True)
            u = field.velocity(y, t)
            if probe is not None:
                div = _hutchinson_divergence(u, y, probe, create_graph=differentiable)
            else:
                div = _exact_divergence(u, y, create_graph=differentiable)
        if differentiable:
            return u, div
        return u.detach(), div.detach()

    times = torch.tensor([t1, t0], dtype=x.dtype, device=x.device)
    start = (x if differentiable else x.detach(), torch.zeros(x.shape[0], dtype=x.dtype, device=x.device))
    xs, ells = torchdiffeq.odeint(rhs, start, times, method=method, rtol=rtol, atol=atol, options=options)
    x_source, delta = xs[-1], ells[-1]
    prior_lp = prior(x_source)
    log_prob = prior_lp + delta
    nats = -log_prob / dim
    return LikelihoodResult(
        log_prob=log_prob, prior_log_prob=prior_lp, delta_log_prob=delta, nats_per_dim=nats,
        bits_per_dim=nats / math.log(2), nfe=nfe, exact_divergence=not use_hutchinson,
    )
