r"""Schrödinger-bridge SDEs :math:`dX_t = b(X_t, t)\,dt + \sqrt{\varepsilon}\,dW_t` and their sampler.

A Schrödinger bridge with a Brownian reference of variance :math:`\varepsilon` (so that the
reference bridge is :math:`x_t = (1-t)x_0 + t x_1 + \sqrt{\varepsilon t(1-t)}\,z`, flowbridge's
:func:`~flowbridge.paths.BrownianBridge` with ``sigma = sqrt(eps)``) is the law of the forward SDE

.. math::
    dX_t = b(X_t, t)\,dt + \sqrt{\varepsilon}\,dW_t,\qquad X_0 \sim p_0,

whose drift :math:`b` is what LightSB gives in closed form and what SB-CFM and DSBM learn. The
drift is *not* of the form :math:`u + \epsilon' \nabla\log p_t` for a free level :math:`\epsilon'`
(the marginal score of a data-to-data bridge is unknown), so it does not fit the generic
:class:`~flowbridge.samplers.sde.EulerMaruyama`; :class:`BridgeField` exposes :meth:`BridgeField.drift`
and the fixed ``eps`` instead, and :class:`BridgeEulerMaruyama` (registered as
``"bridge_euler_maruyama"``) integrates it through :func:`flowbridge.sample`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from flowbridge._utils import as_time
from flowbridge.fields.base import Field, call_net
from flowbridge.fields.bridge import BridgeField
from flowbridge.random import RandomSource, randn_like
from flowbridge.samplers.base import Solver, register_solver


class DriftNetworkField(BridgeField):
    r"""A bridge field whose drift is a network ``net(x, t)`` (DSBM / bridge matching).

    Args:
        net: a network ``net(x, t)`` with ``t`` of shape (B,), e.g. :class:`~flowbridge.nets.MLP`.
        eps: variance of the Brownian reference.
    """

    def __init__(self, net: nn.Module, eps: float) -> None:
        super().__init__(eps)
        self.net = net

    def drift(self, x: Tensor, t: Tensor | float) -> Tensor:
        return call_net(self.net, x, as_time(t, x), {})


@dataclass(frozen=True)
class BridgeSDEState:
    """Grid, step sizes and noise standard deviations, on the state's device and dtype."""

    t: Tensor
    h: Tensor
    noise_std: Tensor


@register_solver("bridge_euler_maruyama")
class BridgeEulerMaruyama(Solver[BridgeSDEState]):
    r"""Euler–Maruyama on :math:`dX = b(X, t)\,dt + \sqrt{\varepsilon}\,dW` for a :class:`BridgeField`.

    Step: :math:`x_{i+1} = x_i + h_i\,b(x_i, t_i) + \sqrt{\varepsilon h_i}\,\xi_i`. The drift is only
    evaluated at the left points, so drifts singular at :math:`t = 1` (bridges pinned at the target)
    are fine on grids that end at 1. Strong order 1/2, weak order 1.
    """

    order = 0.5
    stochastic = True
    needs_gaussian_path = False

    def check(self, field: Field, steps: int) -> None:
        super().check(field, steps)
        if not isinstance(field, BridgeField):
            raise TypeError(
                f"solver {self.name!r} integrates a BridgeField (LightSB, SB-CFM, DSBM drifts); got "
                f"{type(field).__name__}. For probability-flow fields use 'euler_maruyama' or an ODE solver"
            )

    def init(self, field: Field, x: Tensor, grid: Tensor, *, generator: RandomSource = None) -> BridgeSDEState:
        if not isinstance(field, BridgeField):
            self.check(field, len(grid) - 1)
        h = grid[1:] - grid[:-1]
        if (h <= 0).any():
            raise ValueError(f"{self.name}: the time grid must increase (source t=0 towards target t=1)")
        like = dict(device=x.device, dtype=x.dtype)
        noise_std = torch.sqrt(field.eps * h)  # float64 on the CPU, moved once
        return BridgeSDEState(t=grid.to(**like), h=h.to(**like), noise_std=noise_std.to(**like))

    def step(
        self, field: Field, x: Tensor, state: BridgeSDEState, i: int, *, generator: RandomSource = None
    ) -> tuple[Tensor, BridgeSDEState]:
        drift = field.drift(x, state.t[i])  # type: ignore[attr-defined]
        return x + state.h[i] * drift + state.noise_std[i] * randn_like(x, generator=generator), state
